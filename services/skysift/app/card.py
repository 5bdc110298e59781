"""The alert on the label page as one HTML block: heading, light curve, stamps and facts.

One block, with the images inlined, so the browser swaps the whole alert at once: drawn as separate
Streamlit elements, the heading of the next alert showed above the plot and facts of the previous one while
the page reran. A stamp opens larger when clicked (an HTML ``details``: no script needed).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape

# Sized for one screen at 1400×1000 with the sidebar open: light curve beside three 200 px stamps.
CSS = """
<style>
.sk-card{font-size:0.86rem;line-height:1.25}
.sk-head{font-size:1.25rem;font-weight:600;margin:0 0 .35rem 0}
.sk-head .sk-mine{font-weight:400;font-size:1rem}
.sk-row{display:flex;gap:12px;align-items:flex-start}
.sk-lc img{width:380px;display:block}
.sk-stamps{display:flex;gap:8px}
.sk-stamp{margin:0;text-align:center}
.sk-stamp img{width:204px;height:204px;image-rendering:pixelated;display:block;cursor:zoom-in}
.sk-stamp summary{list-style:none}
.sk-stamp summary::-webkit-details-marker{display:none}
.sk-stamp details[open] img.sk-small{outline:2px solid #40e0ff}
.sk-zoom{position:fixed;z-index:1000;top:90px;left:50%;transform:translateX(-50%);background:#fff;
 padding:10px;border:1px solid #999;box-shadow:0 4px 24px rgba(0,0,0,.35)}
.sk-zoom img{width:480px;height:480px;cursor:zoom-out}
.sk-cap{color:#555;font-size:.78rem;margin-top:2px}
.sk-facts{display:grid;grid-template-columns:repeat(3,auto auto);gap:2px 14px;margin-top:.5rem;
 justify-content:start}
.sk-facts dt{color:#555;white-space:nowrap}
.sk-facts dd{margin:0;font-family:ui-monospace,monospace;font-size:.8rem;max-width:260px;overflow-wrap:anywhere}
.sk-facts dt.sk-wide{grid-column:1}
.sk-facts dd.sk-wide{grid-column:2/-1;max-width:none}
</style>
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@dataclass
class StampPicture:
    name: str
    png: bytes | None  # None: the stamp is missing or unreadable, ``problem`` says which
    problem: str = ""


@dataclass
class Card:
    """What one alert shows; the page fills it before drawing anything, then draws it in one element."""

    candid: int
    heading: str  # "#3 of 12 · ZTF18abc · candid 123", plain text
    light_curve_png: bytes
    light_curve_caption: str
    stamps: list[StampPicture] = field(default_factory=list)
    stamps_note: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    mine: str | None = None  # the labeller's own label of this alert


def _stamp_html(stamp: StampPicture) -> str:
    if stamp.png is None:
        return (f'<figure class="sk-stamp"><div style="width:204px;height:204px;background:#eee;display:flex;'
                f'align-items:center;justify-content:center">{escape(stamp.problem)}</div>'
                f'<figcaption class="sk-cap">{escape(stamp.name)}</figcaption></figure>')
    uri = data_uri(stamp.png)
    return (f'<figure class="sk-stamp"><details><summary><img class="sk-small" src="{uri}" '
            f'alt="{escape(stamp.name)} stamp" title="click to enlarge"></summary>'
            f'<div class="sk-zoom"><img src="{uri}" alt="{escape(stamp.name)} stamp, enlarged">'
            f'<div class="sk-cap">{escape(stamp.name)} (click the small stamp again to close)</div></div></details>'
            f'<figcaption class="sk-cap">{escape(stamp.name)}</figcaption></figure>')


WIDE_FACTS = {"why"}  # free text: a row of its own across the panel (in one narrow cell it took three lines)


def _wide(name: str) -> str:
    return ' class="sk-wide"' if name in WIDE_FACTS else ""


def card_html(card: Card) -> str:
    """The card as HTML; every text in it is escaped (alert fields come from brokers)."""
    facts = "".join(f"<dt{_wide(name)}>{escape(name)}</dt><dd{_wide(name)}>{escape(value)}</dd>"
                    for name, value in card.facts)
    stamps = "".join(_stamp_html(s) for s in card.stamps)
    mine = f' <span class="sk-mine">· your label: <b>{escape(card.mine)}</b></span>' if card.mine else ""
    stamps_block = (f'<div><div class="sk-stamps">{stamps}</div><div class="sk-cap">{escape(card.stamps_note)}</div>'
                    '</div>') if card.stamps else f'<div class="sk-cap">{escape(card.stamps_note)}</div>'
    return (f'{CSS}<div class="sk-card" data-candid="{card.candid}">'
            f'<div class="sk-head">{escape(card.heading)}{mine}</div>'
            f'<div class="sk-row"><figure class="sk-lc" style="margin:0"><img src="{data_uri(card.light_curve_png)}" '
            f'alt="light curve"><figcaption class="sk-cap">{escape(card.light_curve_caption)}</figcaption></figure>'
            f'{stamps_block}</div>'
            f'<dl class="sk-facts">{facts}</dl></div>')
