"""Every message bound for logs, the state store, alerts or the UI passes Airflow's secrets masker."""

from __future__ import annotations


def redact_text(text: object, limit: int | None = None) -> str:
    """``text`` as a string with every registered secret masked, cut to ``limit`` characters."""
    # The Task SDK's masker (the one ``airflow.sdk.log.mask_secret`` feeds): public API exposes only
    # ``mask_secret``, so the redactor is imported from where ``airflow.sdk.log`` itself takes it.
    from airflow.sdk._shared.secrets_masker import redact

    shown = str(redact(str(text)))
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return shown
