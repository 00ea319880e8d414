from django.conf import settings
from django.core.checks import Error, Tags, register

from statecore.whatsapp.config import SIGNED_KINDS

# What each kind calls the secret GATEWAY_WEBHOOK_SECRET must equal.
_WEBHOOK_SECRET_IS = {
    "waha": "the HMAC key WAHA signs its webhooks with (WHATSAPP_HOOK_HMAC_KEY, or the "
    "session's webhook hmac.key)",
    "evolution": "the jwt_key header of the instance's webhook (setup_gateway_webhook sets it)",
    "cloud": "your Meta app's App Secret (App settings > Basic)",
}


@register(Tags.security, deploy=True)
def secret_key_from_environment(app_configs, **kwargs):
    if settings.SECRET_KEY_FROM_ENV:
        return []
    return [
        Error(
            "SECRET_KEY is not set in the environment.",
            hint="Set SECRET_KEY to a long random value (see README).",
            id="statecore.E001",
        )
    ]


@register(Tags.security, deploy=True)
def webhook_secret_for_a_pushing_gateway(app_configs, **kwargs):
    # Without it /gateway/webhook trusts nothing, so no customer's message ever arrives;
    # start-up allows it (a first run may not have one yet), a deployment must not.
    kind = settings.GATEWAY_KIND
    if kind not in SIGNED_KINDS or settings.GATEWAY_WEBHOOK_SECRET:
        return []
    return [
        Error(
            f"GATEWAY_WEBHOOK_SECRET is empty while GATEWAY_KIND is {kind}: every webhook "
            "would be refused (401) and no customer's message would arrive.",
            hint=f"Set GATEWAY_WEBHOOK_SECRET to {_WEBHOOK_SECRET_IS[kind]} (see README, "
            "the gateway's section).",
            id="statecore.E002",
        )
    ]
