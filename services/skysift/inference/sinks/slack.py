"""Slack: a summary of the alerts a model scores above a threshold, with a probability plot.

Two ways in, as Slack offers: an incoming webhook (POST JSON ``{"text", "blocks"}``, answered ``ok``), or a bot
token with a channel (``chat.postMessage``, answered ``{"ok": true, "ts": ...}``). Only the bot token can attach
the plot (``files.getUploadURLExternal``, upload, ``files.completeUploadExternal`` in the message's thread):
webhooks cannot upload files. An alert qualifies when its most probable class, other than a binary model's
negative class, reaches the threshold.
"""

from __future__ import annotations

import io

import requests

from skysift.errors import ConfigError, SkysiftError
from skysift.inference.settings import SlackSettings
from skysift.inference.sinks import http
from skysift.inference.sinks.base import Scored, class_probabilities
from skysift.modeltags import get_tag

AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "missing_scope",
               "channel_not_found", "not_in_channel"}
PLOT_ALERTS = 6  # panels in one plot


class SlackError(SkysiftError):
    """Slack refused a message."""


def hits(scored: Scored, threshold: float) -> list[tuple[dict, str, list, tuple[str, float]]]:
    """Rows whose top non-negative class reaches ``threshold``, most probable first."""
    out = []
    for row, tag, walk in class_probabilities(scored.predictions, scored.models):
        model = scored.models[tag]
        model_tag = get_tag(tag)
        negative = "" if model_tag.multiclass else model_tag.negative_class  # every class of a multi-class model is news
        candidates = [(label, p) for label, _, p in walk if label in model.taxonomy.leaves and label != negative]
        if not candidates:
            continue
        label, p = max(candidates, key=lambda c: c[1])
        if p >= threshold:
            out.append((row, tag, walk, (label, p)))
    return sorted(out, key=lambda h: -h[3][1])


def summary(found: list, scored: Scored, settings: SlackSettings) -> tuple[str, list[dict]]:
    """Message text (also the notification) and Block Kit blocks listing up to ``max_alerts`` alerts."""
    where = f" in {scored.batch.key}" if scored.batch else ""
    models = ", ".join(sorted({f"{r['model_name']} v{r['model_version']}" for r, *_ in found}))
    text = f"skysift: {len(found)} alerts above {settings.threshold:g}{where} ({models})"
    lines = [f"• *{row['objectId']}* (candid {row['candid']}): {label} {p:.3f}"
             for row, _, _, (label, p) in found[: settings.max_alerts]]
    if len(found) > settings.max_alerts:
        lines.append(f"… and {len(found) - settings.max_alerts} more")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
              {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]
    return text, blocks


def probability_plot(found: list) -> bytes:
    """PNG: per alert, the class probabilities in pre-order, children indented under their parent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = found[:PLOT_ALERTS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(6, 1.2 + 0.45 * sum(len(h[2]) for h in shown)), squeeze=False)
    for ax, (row, _, walk, _) in zip(axes[:, 0], shown):
        depth = {"": -1}
        labels = []
        for label, parent, _ in walk:
            depth[label] = depth[parent] + 1
            labels.append("   " * depth[label] + label)
        ax.barh(range(len(walk)), [p for *_, p in walk], color="tab:blue")
        ax.set_yticks(range(len(walk)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{row['objectId']}  candid {row['candid']}  ({row['model_name']} v{row['model_version']})",
                     fontsize=8)
    axes[-1, 0].set_xlabel("probability")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


class SlackSink:
    name = "slack"

    def __init__(self, settings: SlackSettings, attempts: int = 4, backoff: float = 0.5):
        self.settings = settings
        self.attempts = attempts
        self.backoff = backoff
        self.session = requests.Session()

    def send(self, scored: Scored) -> str:
        found = hits(scored, self.settings.threshold)
        if not found:
            return f"no alert above {self.settings.threshold:g}"
        text, blocks = summary(found, scored, self.settings)
        if self.settings.bot_token is not None and self.settings.channel:
            ts = self._api("chat.postMessage", json={"channel": self.settings.channel, "text": text, "blocks": blocks})["ts"]
            if self.settings.plot:
                self._upload_plot(probability_plot(found), ts)
                return f"{len(found)} alerts posted to {self.settings.channel} with a plot"
            return f"{len(found)} alerts posted to {self.settings.channel}"
        self._webhook({"text": text, "blocks": blocks})
        return f"{len(found)} alerts posted to the webhook"

    def _webhook(self, body: dict) -> None:
        resp = http.request(self.session, "POST", self.settings.webhook_url.get_secret_value(), json=body,
                            attempts=self.attempts, backoff=self.backoff, what="Slack webhook POST",
                            timeout=self.settings.timeout_seconds)
        if resp.status_code in (403, 404, 410):
            raise ConfigError(f"Slack webhook answered HTTP {resp.status_code} {resp.text[:100]!r}: check "
                              "SKYSIFT_SLACK_WEBHOOK_URL (revoked, wrong, or its channel archived)")
        if resp.status_code != 200:
            raise SlackError(f"Slack webhook answered HTTP {resp.status_code}: {resp.text[:200]}")

    def _api(self, method: str, **kwargs) -> dict:
        headers = {"Authorization": f"Bearer {self.settings.bot_token.get_secret_value()}"}
        resp = http.request(self.session, "POST", f"{self.settings.api_url.rstrip('/')}/{method}", headers=headers,
                            attempts=self.attempts, backoff=self.backoff, what=f"Slack {method}",
                            timeout=self.settings.timeout_seconds, **kwargs)
        try:
            payload = resp.json()
        except ValueError:
            raise SlackError(f"Slack {method} answered HTTP {resp.status_code}: {resp.text[:200]}") from None
        if not payload.get("ok"):
            error = payload.get("error", f"HTTP {resp.status_code}")
            if error in AUTH_ERRORS:
                raise ConfigError(f"Slack {method} refused: {error}: check SKYSIFT_SLACK_BOT_TOKEN (scopes "
                                  "chat:write, files:write) and SKYSIFT_SLACK_CHANNEL (the bot must be a member)")
            raise SlackError(f"Slack {method} refused: {error}")
        return payload

    def _upload_plot(self, png: bytes, thread_ts: str) -> None:
        name = "skysift_probabilities.png"
        ticket = self._api("files.getUploadURLExternal", data={"filename": name, "length": len(png)})
        resp = http.request(self.session, "POST", ticket["upload_url"], files={"file": (name, png, "image/png")},
                            attempts=self.attempts, backoff=self.backoff, what="Slack file upload",
                            timeout=self.settings.timeout_seconds)
        if resp.status_code != 200:
            raise SlackError(f"Slack file upload answered HTTP {resp.status_code}: {resp.text[:200]}")
        self._api("files.completeUploadExternal", json={
            "files": [{"id": ticket["file_id"], "title": "class probabilities"}],
            "channel_id": self.settings.channel, "thread_ts": thread_ts,
        })
