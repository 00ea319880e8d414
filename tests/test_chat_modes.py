"""A mode per chat (issue 14, item 3): review / auto / off, enforced where a draft is
added, whoever adds it; set from the card, the history and the admin; audited."""
