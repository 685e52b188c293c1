"""The secrets every deployment sets itself, checked before a process serves anything.

Two secrets have no default, because a default is public and anyone who reads
this repository could forge with it:

``SYNCHUMAN_WEBHOOKS__SECRET``
    signs every webhook call; a receiver that verifies signatures would accept
    forgeries made with a public key.  Needed by the API and every worker.
``SYNCHUMAN_STORAGE__SIGNING_SECRET``
    signs the local backend's download URLs; with a public key anyone could
    mint a URL for any job's files.  Needed only with ``storage.backend=local``
    (S3 presigns with its own credentials).

The API (:func:`api.app.create_app`) and the worker (its start hook) call
:func:`require_deployment_secrets` and refuse to start, naming the variable,
when one is missing, empty, malformed or one of the values this repository
has ever published.  The embedded stack (``synchuman up``/``generate``)
generates fresh ones at every start.  Generate your own with::

    echo "SYNCHUMAN_WEBHOOKS__SECRET=whsec_$(openssl rand -base64 32)"
    echo "SYNCHUMAN_STORAGE__SIGNING_SECRET=$(openssl rand -hex 32)"
"""

from __future__ import annotations

from shared.errors import ConfigurationError, WebhookSignatureError
from shared.settings import Settings
from shared.webhook_signature import secret_key

WEBHOOK_SECRET_VAR = "SYNCHUMAN_WEBHOOKS__SECRET"
SIGNING_SECRET_VAR = "SYNCHUMAN_STORAGE__SIGNING_SECRET"

PUBLISHED_SECRETS = frozenset({
    "whsec_Y2hhbmdlLW1lLWxvY2FsLXdlYmhvb2stc2VjcmV0",  # earlier default webhook secret
    "change-me-local-signing-secret",  # earlier default signing secret
    "whsec_...",  # the README's placeholder
})
"""Values that appeared in this repository as defaults or examples: never secret."""

HOW_TO_GENERATE = {
    WEBHOOK_SECRET_VAR: 'whsec_$(openssl rand -base64 32)',
    SIGNING_SECRET_VAR: "$(openssl rand -hex 32)",
}


def secret_problems(settings: Settings) -> list[str]:
    """One sentence per secret this process cannot run with, naming its variable; empty when all are fine."""
    problems = []
    webhook = settings.webhooks.secret
    if reason := _weakness(webhook):
        problems.append(_problem(WEBHOOK_SECRET_VAR, reason))
    else:
        try:
            secret_key(webhook)
        except WebhookSignatureError as exc:
            problems.append(_problem(WEBHOOK_SECRET_VAR, f"is malformed ({exc.message})"))
    if settings.storage.backend == "local" and (reason := _weakness(settings.storage.signing_secret)):
        problems.append(_problem(SIGNING_SECRET_VAR, reason))
    return problems


def require_deployment_secrets(settings: Settings) -> None:
    """Raise :class:`ConfigurationError` listing every missing or public secret."""
    problems = secret_problems(settings)
    if problems:
        raise ConfigurationError("refusing to start: " + " ".join(problems))


def _weakness(value: str | None) -> str | None:
    if value is None or not value.strip():
        return "is not set"
    if value.strip() in PUBLISHED_SECRETS:
        return "is a published example value, not a secret"
    return None


def _problem(variable: str, reason: str) -> str:
    return f"{variable} {reason}; set it to a value of your own, e.g. {variable}={HOW_TO_GENERATE[variable]}."
