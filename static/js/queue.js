/*
 * The reviewer pages' own script: keyboard shortcuts, the current card, cards that
 * arrive by polling, the Undo countdown and bulk selection. htmx does every request;
 * the pages work without this file (plain forms). No eval, no inline script (CSP).
 */
(function () {
  "use strict";

  // Styles may now hide what only matters with a script (the bulk buttons until a tick).
  document.documentElement.classList.add("js");

  var TICK_MS = 1000;
  var AGE_TICK_MS = 15000;
  var WINDOW_SHORT_SECONDS = 2 * 3600; // cards.WINDOW_SHORT
  var EMPTY_SELECTION = "Tick replies to act on several at once";
  var currentId = null;
  var currentIndex = 0;
  var actingId = null;
  var undoDeadlines = new WeakMap();
  var ageBase = new WeakMap();
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  // --- The current card ---------------------------------------------------------

  function cardList() {
    return document.getElementById("card-list");
  }

  function cards() {
    var list = cardList();
    return list ? Array.prototype.slice.call(list.querySelectorAll("[data-card]")) : [];
  }

  function current() {
    return currentId ? document.getElementById(currentId) : null;
  }

  function setCurrent(card, focus) {
    var old = current();
    if (old) old.classList.remove("is-current");
    if (!card) {
      currentId = null;
      return;
    }
    currentId = card.id;
    currentIndex = Math.max(0, cards().indexOf(card));
    card.classList.add("is-current");
    if (focus) {
      card.focus({ preventScroll: true });
      card.scrollIntoView({ block: "nearest", behavior: reduceMotion ? "auto" : "smooth" });
    }
  }

  function move(step) {
    var list = cards();
    if (!list.length) return;
    var index = list.indexOf(current());
    var target = index === -1 ? 0 : Math.min(list.length - 1, Math.max(0, index + step));
    setCurrent(list[target], true);
  }

  function nextPendingAfter(card) {
    var list = cards();
    var index = list.indexOf(card);
    for (var i = index + 1; i < list.length; i++) if (list[i].hasAttribute("data-pending")) return list[i];
    for (var j = index - 1; j >= 0; j--) if (list[j].hasAttribute("data-pending")) return list[j];
    return null;
  }

  function press(key) {
    return function () {
      var card = current();
      var button = card && card.querySelector('[data-key="' + key + '"]');
      if (!button) return;
      // A card swapped in a moment ago is wired by htmx only when it settles; a key
      // pressed before that would follow the plain link or form (a whole new page).
      if (window.htmx) window.htmx.process(card);
      button.click();
    };
  }

  function toggleSelect() {
    var card = current();
    var box = card && card.querySelector('input[name="ids"]');
    if (!box) return;
    box.checked = !box.checked;
    updateBulk();
  }

  function showHelp() {
    var dialog = document.getElementById("keys-help");
    if (dialog && !dialog.open) dialog.showModal();
  }

  var KEYS = {
    j: function () { move(1); },
    k: function () { move(-1); },
    a: press("a"),
    e: press("e"),
    r: press("r"),
    u: press("u"),
    c: press("c"),
    x: toggleSelect,
    "?": showHelp,
  };

  function isTyping(element) {
    if (!element || !element.matches) return false;
    return element.matches(
      "textarea, select, [contenteditable], input:not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit])"
    );
  }

  document.addEventListener("keydown", function (event) {
    // Ctrl/Cmd+Enter in the edit box saves and approves.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.matches && event.target.matches(".edit-form textarea")) {
      event.preventDefault();
      event.target.form.requestSubmit();
      return;
    }
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target) || document.querySelector("dialog[open]")) return;
    var action = KEYS[event.key];
    if (!action || !cardList()) return;
    event.preventDefault();
    action();
  });

  document.addEventListener("focusin", function (event) {
    var card = event.target.closest && event.target.closest("#card-list [data-card]");
    if (card && card.id !== currentId) setCurrent(card, false);
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest("#card-list [data-card]");
    if (card && card.id !== currentId) setCurrent(card, false);
    if (event.target.closest && event.target.closest("[data-open-help]")) showHelp();
    var dismiss = event.target.closest && event.target.closest("[data-dismiss]");
    if (dismiss) {
      var gone = dismiss.closest("[data-card]");
      var after = gone && nextPendingAfter(gone);
      if (gone) gone.remove();
      if (after) setCurrent(after, true);
    }
  });

  // --- After htmx swaps ----------------------------------------------------------

  document.body.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    // The conversation toggles: open, the same button (or `c`) folds it away again.
    if (elt.hasAttribute && elt.hasAttribute("data-thread")) {
      var slot = document.getElementById(elt.getAttribute("aria-controls"));
      if (slot && slot.firstElementChild) {
        event.preventDefault();
        slot.replaceChildren();
        elt.setAttribute("aria-expanded", "false");
      }
      return;
    }
    var card = elt.closest && elt.closest("[data-card]");
    if (card) actingId = card.id;
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    var slot = event.detail.target;
    if (!slot || !slot.classList || !slot.classList.contains("thread-slot")) return;
    var opener = document.querySelector('[data-thread][aria-controls="' + slot.id + '"]');
    if (opener) opener.setAttribute("aria-expanded", "true");
    // The newest messages are the ones that matter: the end of the conversation in view.
    var last = slot.querySelector(".thread-list > :last-child");
    if (last && opener) last.scrollIntoView({ block: "nearest" });
  });

  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (actingId && event.target && event.target.id === actingId) {
      var card = event.target;
      var wasCurrent = actingId === currentId;
      actingId = null;
      if (card && wasCurrent) {
        if (!card.hasAttribute("data-pending")) {
          // Decided (or someone else was first): on to the next one.
          setCurrent(nextPendingAfter(card) || card, true);
        } else if (!card.contains(document.activeElement)) {
          setCurrent(card, true);
        } else {
          setCurrent(card, false);
        }
      }
    } else if (currentId && !document.getElementById(currentId)) {
      // The current card went (handled elsewhere): the one now in its place.
      var list = cards();
      var replacement = list[Math.min(currentIndex, list.length - 1)] || null;
      var focusLost = !document.activeElement || document.activeElement === document.body;
      setCurrent(replacement, focusLost);
    }
    placeNewCards();
    refresh();
    announce();
  });

  // The edit box opens with the cursor after the draft's last word, ready to add to it:
  // set when the box is first focused (htmx's autofocus, a click, the page's own autofocus),
  // never later, so it neither moves a cursor someone placed nor races their first keys.
  var placed = new WeakSet();

  function cursorToEnd(box) {
    if (!box || placed.has(box)) return;
    placed.add(box);
    var end = box.value.length;
    box.setSelectionRange(end, end);
    box.scrollTop = box.scrollHeight;
  }

  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches(".edit-form textarea")) cursorToEnd(event.target);
  });

  // The poll removes cards others handled; a card someone is editing stays, with the news.
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var fragment = event.detail.fragment;
    if (!target.matches || !target.matches("[data-card]")) return;
    var replacement = fragment && fragment.querySelector && fragment.querySelector("[data-card]");
    if (replacement) return;
    // Only a pending card is the poll's to remove: one this reviewer just decided stays
    // (with its Undo), even if the poll's list of shown cards was taken a moment before.
    if (!target.hasAttribute("data-pending")) {
      event.detail.shouldSwap = false;
      return;
    }
    if (!target.querySelector("textarea, .reject-form input")) return;
    event.detail.shouldSwap = false;
    markGone(target, fragment ? fragment.textContent.trim() : "");
  });

  function markGone(card, text) {
    var shown = card.querySelector('input[name="shown"]');
    if (shown) shown.remove();
    card.removeAttribute("data-pending");
    card.classList.add("is-gone");
    var alert = card.querySelector(".gone-alert");
    if (!alert) {
      alert = document.createElement("p");
      alert.className = "gone-alert";
      alert.setAttribute("role", "alert");
      card.insertBefore(alert, card.firstChild);
    }
    alert.textContent = "Handled elsewhere: " + (text || "no longer pending") + ". Your changes here can no longer be saved.";
  }

  function placeNewCards() {
    var list = cardList();
    if (!list) return;
    list.querySelectorAll("[data-card][data-new]").forEach(function (card) {
      card.removeAttribute("data-new");
      if (card.hasAttribute("data-pending")) notify(card, "New draft");
      var order = card.getAttribute("data-order") || "";
      var before = null;
      cards().some(function (other) {
        if (other !== card && (other.getAttribute("data-order") || "") > order) {
          before = other;
          return true;
        }
        return false;
      });
      if (before && before !== card.nextElementSibling) list.insertBefore(card, before);
      card.classList.add("is-arriving");
      window.setTimeout(function () { card.classList.remove("is-arriving"); }, 2500);
    });
  }

  // --- Undo countdown, waiting times, bulk selection -----------------------------

  function armUndo() {
    document.querySelectorAll("form.undo[data-undo-seconds]").forEach(function (form) {
      if (!undoDeadlines.has(form)) {
        undoDeadlines.set(form, Date.now() + 1000 * Number(form.getAttribute("data-undo-seconds")));
      }
    });
  }

  function tickUndo() {
    document.querySelectorAll("form.undo[data-undo-seconds]").forEach(function (form) {
      var left = Math.ceil(((undoDeadlines.get(form) || 0) - Date.now()) / 1000);
      var label = form.querySelector(".undo-left");
      if (left > 0) {
        if (label) label.textContent = left + " s";
        return;
      }
      // The sender claims it now: the server would refuse an Undo.
      var done = document.createElement("span");
      done.className = "muted small";
      done.textContent = "Undo window closed";
      form.replaceWith(done);
    });
  }

  function formatAge(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) return minutes ? hours + " h " + minutes + " min" : hours + " h";
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return hours ? days + " d " + hours + " h" : days + " d";
  }

  function tickAges() {
    document.querySelectorAll("time[data-age]").forEach(function (time) {
      var value = time.getAttribute("data-age");
      if (value === "") return;
      if (!ageBase.has(time)) ageBase.set(time, { seconds: Number(value), at: Date.now() });
      var base = ageBase.get(time);
      time.textContent = formatAge(base.seconds + (Date.now() - base.at) / 1000);
    });
    // Cloud's reply window counts down as the page stays open (the server refuses
    // an approve once it has closed, whatever the page still shows).
    document.querySelectorAll(".window-left[data-left]").forEach(function (span) {
      if (!ageBase.has(span)) ageBase.set(span, { seconds: Number(span.getAttribute("data-left")), at: Date.now() });
      var base = ageBase.get(span);
      var left = base.seconds - (Date.now() - base.at) / 1000;
      span.textContent = left > 0 ? "window open " + formatAge(left) : "window closed";
      span.classList.toggle("window-open", left >= WINDOW_SHORT_SECONDS);
      span.classList.toggle("window-short", left > 0 && left < WINDOW_SHORT_SECONDS);
      span.classList.toggle("window-closed", left <= 0);
    });
  }

  function updateBulk() {
    var count = document.getElementById("bulk-count");
    if (!count) return;
    var boxes = Array.prototype.slice.call(document.querySelectorAll('#card-list input[name="ids"]'));
    var checked = boxes.filter(function (box) { return box.checked; }).length;
    count.textContent = checked ? checked + " selected" : EMPTY_SELECTION;
    var form = document.getElementById("bulk-form");
    if (form) form.classList.toggle("has-selection", checked > 0);
    var all = document.getElementById("select-all");
    if (all) {
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      document.querySelectorAll('#card-list input[name="ids"]').forEach(function (box) {
        box.checked = event.target.checked;
      });
    }
    if (event.target.name === "ids" || event.target.id === "select-all") updateBulk();
  });

  // --- Errors htmx does not swap --------------------------------------------------

  var toastTimer = null;

  function toast(text) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(function () { box.hidden = true; }, 6000);
  }

  document.body.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status === 403) toast("You are not allowed to do that (403). Ask an administrator for the Reviewers role.");
    else if (status === 404) toast("That reply no longer exists.");
    else toast("Something went wrong (" + status + "). Reload the page to see where things stand.");
  });

  document.body.addEventListener("htmx:sendError", function () {
    toast("The server cannot be reached. Check the connection; the page retries by itself.");
  });

  // --- The tab's title and notifications ---------------------------------------------

  var TITLE_COUNT = /^\(\d+\) /;
  var NOTIFY_KEY = "queue.notify";
  var ANNOUNCED_KEY = "queue.announcedOverdue";

  // "(3) Queue · ...": the drafts waiting, as the header's count (which the poll renews).
  function updateTitle() {
    var count = document.querySelector("#queue-counts .count-pending .count-n");
    if (!count) return;
    var waiting = parseInt(count.textContent, 10) || 0;
    var base = document.title.replace(TITLE_COUNT, "");
    document.title = waiting > 0 ? "(" + waiting + ") " + base : base;
  }

  function notificationsOn() {
    return "Notification" in window && window.Notification.permission === "granted" && storage("localStorage", NOTIFY_KEY) === "on";
  }

  function storage(store, key, value) {
    try {
      if (value === undefined) return window[store].getItem(key);
      window[store].setItem(key, value);
    } catch (error) {
      return null; // storage off (private mode): notifications simply stay off
    }
    return value;
  }

  function showNotifyButton() {
    var button = document.querySelector("[data-notify]");
    if (!button) return;
    if (!("Notification" in window) || !cardList()) {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    var on = notificationsOn();
    var blocked = window.Notification.permission === "denied";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = blocked ? "Notifications blocked by the browser" : on ? "Notifications on" : "Notify me";
    button.disabled = blocked;
  }

  // The permission is asked here only, on the reviewer's click: never on load.
  function toggleNotify() {
    if (notificationsOn()) {
      storage("localStorage", NOTIFY_KEY, "off");
      showNotifyButton();
      return;
    }
    storage("localStorage", NOTIFY_KEY, "on");
    if (window.Notification.permission === "granted") {
      showNotifyButton();
      return;
    }
    Promise.resolve(window.Notification.requestPermission()).then(showNotifyButton, showNotifyButton);
  }

  function cardName(card) {
    var name = card.querySelector(".who-name");
    return name ? name.textContent.trim() : "";
  }

  // Only while the tab is hidden: a reviewer looking at the page sees the card arrive.
  function notify(card, what) {
    if (document.visibilityState !== "hidden" || !notificationsOn()) return false;
    var note = new window.Notification(what + ": " + cardName(card), { body: "Waiting in the queue.", tag: card.id });
    note.onclick = function () {
      window.focus();
      var target = document.getElementById(card.id);
      if (target) setCurrent(target, true);
    };
    return true;
  }

  function announcedIds() {
    try {
      return JSON.parse(storage("sessionStorage", ANNOUNCED_KEY) || "[]");
    } catch (error) {
      return [];
    }
  }

  // A draft waiting past the overdue mark is announced once per tab (kept across reloads).
  function announce() {
    var list = cardList();
    if (!list || document.visibilityState !== "hidden" || !notificationsOn()) return;
    var limit = 60 * Number(list.getAttribute("data-overdue-minutes") || 0);
    if (!limit) return;
    var done = announcedIds();
    cards().forEach(function (card) {
      if (!card.hasAttribute("data-pending") || done.indexOf(card.id) !== -1) return;
      var age = card.querySelector(".waited time[data-age]");
      var base = age && ageBase.get(age);
      var waited = base ? base.seconds + (Date.now() - base.at) / 1000 : NaN;
      if (!(waited >= limit) && !card.classList.contains("is-overdue")) return;
      if (notify(card, "Overdue")) done.push(card.id);
    });
    storage("sessionStorage", ANNOUNCED_KEY, JSON.stringify(done.slice(-500)));
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-notify]")) toggleNotify();
  });

  // --- Filters folded on a phone ------------------------------------------------------

  var NARROW = window.matchMedia("(max-width: 720px)");

  function foldFilters() {
    var fold = document.querySelector("details[data-fold-narrow]");
    if (!fold) return;
    // A wide screen has no "Filters" toggle to open them again: always open there.
    if (!NARROW.matches) fold.open = true;
    else if (!fold.hasAttribute("data-filtered")) fold.open = false;
  }

  if (NARROW.addEventListener) NARROW.addEventListener("change", foldFilters);

  // --- Start ------------------------------------------------------------------------

  function refresh() {
    document.querySelectorAll("[data-open-help], [data-dismiss], [data-select-all]").forEach(function (element) {
      element.hidden = false;
    });
    armUndo();
    tickAges();
    updateBulk();
    updateTitle();
  }

  foldFilters();
  refresh();
  showNotifyButton();
  if (document.activeElement && document.activeElement.matches(".edit-form textarea")) cursorToEnd(document.activeElement);
  var first = document.querySelector("#card-list [data-pending]");
  if (first) setCurrent(first, false);
  window.setInterval(tickUndo, TICK_MS);
  window.setInterval(function () { tickAges(); announce(); }, AGE_TICK_MS);
})();
