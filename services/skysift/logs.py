"""JSON-lines logging for the services (one object per line, easy to ship to any log stack).

Secrets must never reach a log, whoever logs them: client libraries log request lines at DEBUG (urllib3 writes
``POST /services/T…/B…/…``, the secret part of a Slack webhook URL). Two guards, both at the one handler:
HTTP/cloud client libraries are kept at WARNING whatever the level asked for, and every formatted line has the
known secret values (and the path of a secret URL) replaced by ``***``. A secret is any ``SKYSIFT_*`` variable whose
name says so (:data:`SECRET_NAME`; every ``SecretStr`` setting is named like that, checked by a test) and every
file in the secrets directory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from skysift import config

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

SECRET_NAME = re.compile(r"^SKYSIFT_\w*(TOKEN|PASSWORD|SECRET|WEBHOOK_URL|ACCESS_KEY|ACCESS_KEY_ID|API_KEY)\w*$")
QUIET_LIBRARIES = ("urllib3", "requests", "botocore", "boto3", "s3transfer", "httpx", "httpcore", "authlib",
                   "websockets", "git", "docker", "kafka", "confluent_kafka")
# libraries that attach a handler of their own instead of propagating to the root's
OWN_HANDLER_LIBRARIES = ("mlflow",)
MIN_SECRET_CHARS = 6  # shorter values would redact ordinary words; no real credential is that short
REDACTED = "***"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def fitted_message(record: logging.LogRecord) -> str:
    """The record's message. A call whose arguments do not fit its format gets them appended instead: raising
    would break the caller (in a record factory) or make the handler print the raw arguments, secrets included."""
    try:
        return record.getMessage()
    except Exception:
        record.msg, record.args = f"{record.msg} (a log call whose arguments do not fit: {record.args!r})", ()
        return record.msg


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then replaces every secret in the finished line (message, extras, traceback)."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]):
        super().__init__()
        self.inner = inner
        # Longest first, so a URL is replaced whole before its path; JSON-escaped forms too.
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1])}
        self.secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        fitted_message(record)
        return self.redact(self.inner.format(record))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The secrets this process may hold: values of secret-named ``SKYSIFT_*`` variables and of the mounted
    secret files, plus the path and query of any secret URL (what HTTP libraries log of it)."""
    environ = os.environ if environ is None else environ
    values = [value for name, value in environ.items() if SECRET_NAME.match(name)]
    folder = config.secrets_dir()
    if folder:
        for path in Path(folder).iterdir():
            if path.is_file():
                try:
                    values.append(path.read_text().strip())
                except (OSError, UnicodeDecodeError):
                    continue
    out = set()
    for value in values:
        value = value.strip()
        if len(value) < MIN_SECRET_CHARS:
            continue
        out.add(value)
        parts = urlsplit(value) if "://" in value else None
        if parts and len(parts.path) > 1:
            out.add(parts.path + (f"?{parts.query}" if parts.query else ""))
        if parts and parts.password:
            out.add(parts.password)
    return sorted(out)


def setup(level: str = "INFO", json_lines: bool = True, plain_format: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
    """Every log line of the process, whichever library writes it, through one redacting handler on the root.

    MLflow installs its own handler (not propagating) when imported; it is told not to, and one installed by an
    earlier import is removed, so MLflow's lines pass the redaction too."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if json_lines else logging.Formatter(plain_format)
    handler.setFormatter(RedactingFormatter(inner, secret_values()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in OWN_HANDLER_LIBRARIES:
        library = logging.getLogger(name)
        library.handlers[:] = []
        library.propagate = True


def setup_app(level: str = "INFO", json_lines: bool = True) -> None:
    """The Streamlit app's process (`skysift app`): :func:`setup`, Streamlit's own loggers routed to its handler,
    and every record redacted as it is made.

    Streamlit gives each of its loggers (one per module, some made only when first used) a console handler of its
    own and stops it propagating, so its lines (a page's uncaught exception with its traceback) skipped the
    redaction: they are routed, those it makes later too. The web server it starts (uvicorn) then installs
    handlers of its own by dictConfig; the record factory redacts the message and traceback of every record before
    any handler sees it."""
    from streamlit import logger as streamlit_logger

    setup(level, json_lines)

    def route(logger: logging.Logger) -> None:
        logger.handlers[:] = []
        logger.propagate = True

    for logger in streamlit_logger._loggers.values():
        route(logger)
    streamlit_logger.setup_formatter = route  # what Streamlit calls on each logger it makes, and on a config change
    redactor = RedactingFormatter(logging.Formatter(), secret_values())
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        message = fitted_message(record)
        if redactor.redact(message) != message:
            record.msg, record.args = redactor.redact(message), ()
        if record.exc_info:
            record.exc_text = redactor.redact(redactor.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(redacted_record)


def setup_cli() -> None:
    """A command's log: warnings only unless ``SKYSIFT_LOG_LEVEL`` says otherwise, as the bare lines Python prints
    without any set-up, but redacted like a service's (a command's clients hold the same secrets)."""
    setup(os.environ.get("SKYSIFT_LOG_LEVEL", "WARNING"), json_lines=False, plain_format="%(message)s")
