"""Label page: the current round's queue, one alert at a time, one key per label; one's own history and how far
labellers agree."""

import secrets

import pandas as pd
import streamlit as st

from skysift import errors
from skysift.app import agreement, alertdata, card, champion, labelling, plots, stamps, ui
from skysift.app.labelling import SORTS, LabelSession
from skysift.modeltags import SKIP, get_tag, label_keys, labels, tags, vocabulary
from skysift.store import keys

NAV_KEYS = {"undo": "U", "previous": "Left", "next": "Right"}

base, app = ui.settings()
user = st.session_state.get("labeller", "")


@st.cache_data(ttl=30, show_spinner=False)
def experiments_in_store() -> list[str]:
    """Experiment names that have rounds in the store (rounds/<experiment>/round=NNN/...)."""
    names = {k.split("/")[1] for k in ui.store().list_keys("rounds/") if k.count("/") >= 2}
    return sorted(names)


@st.cache_data(max_entries=512, show_spinner=False)
def stamp_image(alerts_key: str, candid: int, which: str, stretch: str, zscale: bool) -> bytes:
    view = alertdata.load_alert(ui.batches(), alerts_key, candid)
    alert = view.alert
    return stamps.stamp_png(view.cutouts[which], stretch=stretch, zscale=zscale, survey=alert.get("survey") or "",
                            ra=alert.get("ra"), dec=alert.get("dec"))


@st.cache_data(max_entries=256, show_spinner=False)
def light_curve_image(alerts_key: str, candid: int, upper_limits: bool, flux: bool) -> bytes:
    curve = plots.light_curve(alertdata.load_alert(ui.batches(), alerts_key, candid).alert)
    return plots.figure_png(plots.light_curve_figure(curve, upper_limits=upper_limits, flux=flux))


@st.cache_data(ttl=60, show_spinner="Scoring the queue with the retrained model…")
def champion_scores(candids: tuple[int, ...], model_tag: str) -> champion.ChampionScores:
    base, app = ui.settings()
    return champion.champion_scores(base, list(candids), model_tag, app.rpc_timeout_s)


@st.cache_data(show_spinner=False)
def round_model(experiment: str, round_number: int) -> tuple[str, str]:
    return champion.round_model(ui.store(), experiment, round_number)


def counted_labels(model_tag: str) -> str:
    """Which labels the model of ``model_tag`` learns from, and which it ignores (a sentence for the legend)."""
    tag, vocab = get_tag(model_tag), vocabulary().labels
    ignored = labelling.described([lab for lab in labels() if tag.target(lab) is None], vocab)
    if tag.multiclass:
        return (f"The **{model_tag}** model learns {labelling.described(tag.classes, vocab)}, one class each; "
                f"it ignores {ignored}.")
    return (f"The **{model_tag}** model learns {labelling.described(sorted(tag.positive), vocab)} as "
            f"{tag.positive_class} and {labelling.described(sorted(tag.negative), vocab)} as {tag.negative_class}; "
            f"it ignores {ignored}.")


def _guard(action, *args) -> None:
    """Run a session action from a callback; keep its error to show on the next run instead of a traceback."""
    try:
        action(*args)
        st.session_state.pop("label_error", None)
    except errors.SkysiftError as exc:
        st.session_state.label_error = str(exc)


def on_label(candid: int, label: str) -> None:
    session = st.session_state.label_session
    if candid != session.cursor:
        # A button of an alert the page has already left: while the page redraws, the previous alert's buttons
        # stay mounted (stale) beside the new ones, and a key press clicked both (seen in Chromium). Only the
        # alert the session is on can be labelled, so one key labels one alert.
        return
    comment = st.session_state.get(f"comment_{candid}", "").strip()
    _guard(session.label, candid, label, comment)


def on_undo() -> None:
    _guard(st.session_state.label_session.undo)


def on_move(step: int) -> None:
    st.session_state.label_session.move(step)


def on_goto() -> None:
    _guard(st.session_state.label_session.goto, int(st.session_state.goto_number) - 1)


def on_review() -> None:
    st.session_state.label_session.review()
    st.session_state.show_labelled = True  # the sidebar toggle, drawn after this callback


def on_find() -> None:
    """Jump to the alert whose candid or objectId was typed; an object not in the queue gets its stored history."""
    wanted = st.session_state.find.strip()
    st.session_state.pop("lookup_object", None)
    st.session_state.pop("find_message", None)
    if not wanted:
        return
    session = st.session_state.label_session
    found = next((i for i in session.items if str(i.candid) == wanted), None) or next(
        (i for i in session.items if i.object_id == wanted), None)
    if found is not None:
        session.show_labelled = True
        st.session_state.show_labelled = True  # the sidebar toggle, drawn after this callback
        session.cursor = found.candid
    else:
        st.session_state.lookup_object = wanted
        st.session_state.show_object = True  # the history toggle, drawn after this callback
        st.session_state.find_message = (f"{wanted} is not in this round's queue: its stored alerts, if any, are "
                                         "under Object history (objectIds only: a candid is found in the queue).")


@st.cache_data(ttl=120, max_entries=64, show_spinner="Reading the object's alerts from the store…")
def object_history(survey: str, object_id: str, current_jd: float | None) -> alertdata.ObjectHistory:
    return alertdata.object_history(ui.store(), survey, object_id, current_jd)


def object_context(survey: str, alert: dict) -> None:
    """The object's whole stored history (every alert of it, with dates), read only when asked for."""
    lookup = st.session_state.get("lookup_object")
    object_id = lookup or alert["objectId"]
    with st.expander(f"Object history: every stored alert of {object_id}", expanded=bool(lookup)):
        if not st.toggle("Read them from the store", key="show_object"):
            return
        with ui.reported(f"read the alerts of {object_id}", stop=False):
            found = object_history(survey, object_id, None if lookup else alert.get("jd"))
            if not found.alerts:
                st.info(f"No stored {survey} alert of {object_id} in the newest {found.batches_read} batches.")
                return
            curve, table = st.columns([3, 2])
            curve.image(plots.figure_png(plots.light_curve_figure(plots.light_curve(found.curve_row))),
                        caption=f"Every point of the {len(found.alerts)} stored alerts of {object_id}"
                                + ("" if lookup else "; ringed and dotted: the alert on screen"))
            table.dataframe(pd.DataFrame(alertdata.history_table(found, None if lookup else alert["candid"])),
                            hide_index=True, height=300)


def history_and_agreement(session: LabelSession) -> None:
    """The labeller's own events and the labellers' agreement; read from the trainer only when opened."""
    with st.expander(f"Your label history ({session.done} of this round's alerts labelled)"):
        if st.toggle("Load all my labels from the trainer", key="show_history"):
            with ui.reported("read your labels from the trainer", stop=False):
                rows = agreement.history(ui.trainer().labels(history=True, user=user), user)
                for row in rows:  # as text: Streamlit's table conversion drops a timezone-aware column's zone
                    row["time"] = f"{row['time']:%Y-%m-%d %H:%M:%S} UTC" if row["time"] else ""
                st.dataframe(pd.DataFrame(rows, columns=["time", "label", "candid", "objectId", "experiment", "round",
                                                         "comment"]), hide_index=True)

    with st.expander("Labeller agreement"):
        scope = st.radio("Alerts", ["this round's queue", "every labelled alert"], horizontal=True, key="agreement_scope")
        if st.toggle("Compare the labellers", key="show_agreement"):
            with ui.reported("read the labels from the trainer", stop=False):
                candids = [i.candid for i in session.items] if scope == "this round's queue" else []
                events = ui.trainer().labels(candids, history=True)
                found = agreement.agreement(events)
                used = {e.candid: f"{e.label} ({e.user})" for e in sorted((e for e in events if e.timestamp), key=lambda e: e.timestamp)}
                st.caption(f"{found.n_shared} alerts labelled by more than one user (skips left out); Cohen's kappa is "
                           "agreement corrected for chance: 1 perfect, 0 no better than chance, – undefined (a single "
                           "label between the pair).")
                st.dataframe(pd.DataFrame([{"labeller": p.user_a, "other labeller": p.user_b, "alerts": p.n,
                                            "agreed": p.agreed, "agreement %": round(p.percent, 1),
                                            "Cohen's kappa": None if p.kappa is None else round(p.kappa, 3)}
                                           for p in found.pairs],
                                          columns=["labeller", "other labeller", "alerts", "agreed", "agreement %",
                                                   "Cohen's kappa"]), hide_index=True)
                st.markdown("**Disagreements to adjudicate**")
                st.caption("Consensus rule: rounds and datasets train on each alert's latest label, whoever gave it. "
                           "To settle a disagreement, agree on the class and label the alert again (Find it in the "
                           "sidebar): that label is then the latest.")
                st.dataframe(pd.DataFrame([{"candid": str(d["candid"]), "objectId": d["objectId"],
                                            "labels": " · ".join(f"{u}: {lab}" for u, lab in d["labels"].items()),
                                            "used by rounds (latest)": used.get(d["candid"], "")}
                                           for d in found.disagreements],
                                          columns=["candid", "objectId", "labels", "used by rounds (latest)"]),
                             hide_index=True)


# --- sidebar: what to label and how to show it -------------------------------------------------------------
with st.sidebar:
    with ui.reported("list experiments in the store"):
        known = experiments_in_store()
    choices = sorted(set(known) | {app.experiment})
    experiment = st.selectbox("Experiment", choices, index=choices.index(app.experiment))
    tags = list(tags())
    model_tag = st.selectbox("Model tag", tags, index=tags.index(app.model_tag) if app.model_tag in tags else 0)
    show_limits = st.toggle("Upper limits", value=True)
    stretch = st.selectbox("Stamp stretch", stamps.STRETCHES, index=0)
    zscale = st.toggle("ZScale (else 0.5–99.5 % cut)", value=True)
    sort_by = st.selectbox("Sort by", list(SORTS), format_func=SORTS.get, key="sort_by",
                           help="Random is the control: what labels would look like without a model choosing.")
    show_labelled = st.toggle("Show alerts I already labelled", key="show_labelled")
    st.text_input("Find objectId or candid", key="find", on_change=on_find, placeholder="e.g. ZTF18abcdefg")
    if "find_message" in st.session_state:
        st.caption(st.session_state.find_message)
    if st.button("Reload queue", icon=":material/refresh:"):
        st.session_state.pop("label_session_key", None)

# One screen per alert at 1400×1000: less of Streamlit's padding above and beside the page.
st.html("<style>[data-testid=stMainBlockContainer]{padding:3.4rem 1.5rem 1rem 1.5rem}</style>")
if not user:
    st.info("Give your name in the sidebar first: every label is attributed to a user.")
    st.stop()

key = (user, experiment, model_tag)
if st.session_state.get("label_session_key") != key:
    session = LabelSession(ui.trainer(), user, experiment, model_tag)
    with ui.reported(f"load the queue of experiment {experiment!r}"):
        session.load()
    st.session_state.label_session = session
    st.session_state.label_session_key = key
session: LabelSession = st.session_state.label_session
session.show_labelled = show_labelled

if "label_error" in st.session_state:
    st.error(f"Label not saved: {st.session_state.label_error}", icon=":material/error:")

if not session.items:
    st.info(f"The queue of experiment **{experiment}** (round {session.queue.round}) is empty: run a round first "
            f"(`skysift round --experiment {experiment}`).")
    st.stop()

# --- the order: the strategy's rank, the champion's uncertainty now, or a shuffle fixed for this session ------
seed = st.session_state.setdefault("sort_seed", secrets.randbelow(2**31))
uncertainty = None
if sort_by == "retrained":
    try:
        scores = champion_scores(tuple(i.candid for i in session.items), model_tag)
        uncertainty = scores.uncertainty
    except errors.SkysiftError as exc:
        st.sidebar.warning(f"Cannot sort by the retrained model: {exc}. Showing the queue order.",
                           icon=":material/sort:")
    if uncertainty is not None:
        champion_now = f"{scores.model_name} version {scores.model_version}"
        try:
            queue_tag, queue_version = round_model(experiment, session.queue.round)
            ranked_by = f" (the queue was ranked by {f'{queue_tag} version {queue_version}' if queue_version else 'no model'})"
        except errors.SkysiftError:  # the sort stands; only the comparison with the queue's model is left out
            queue_tag = queue_version = ranked_by = ""
        if (queue_tag, queue_version) == (model_tag, scores.model_version):
            st.sidebar.caption(f"The champion is the model that queued this round ({champion_now}): no retrained "
                               f"model yet, this is its uncertainty.")
        else:
            st.sidebar.caption(f"Most uncertain first for {champion_now}, the champion now{ranked_by}.")
elif sort_by == "random":
    st.sidebar.caption(f"Random order, seed {seed}: the same for this whole browser session.")
session.sort(sort_by if sort_by != "retrained" or uncertainty is not None else "queue", seed, uncertainty)

n = len(session.items)
st.progress(session.done / n, text=f"**{session.progress_text()}** · experiment {experiment}, "
            f"round {session.queue.round} · labelling as {user}")

item = session.current
if item is None:
    st.success(f"All {n} alerts of round {session.queue.round} are labelled. Thank you! The next round "
               f"(`skysift round --experiment {experiment}`) will learn from them.")
    st.button("Review from the first alert", on_click=on_review)
    st.button("Undo the last label", on_click=on_undo, shortcut=NAV_KEYS["undo"], disabled=not session.undo_stack)
    history_and_agreement(session)
    st.stop()

mine = session.mine.get(item.candid)
shown = len(session.view)

# --- everything about the alert is read and rendered before anything of it is drawn, so the alert, its
# buttons and their keys change together (drawn one by one, the previous alert stayed under the next heading)
with ui.reported(f"read alert {item.candid} from the store"):
    view = alertdata.load_alert(ui.batches(), item.alerts_key, item.candid)
alert = view.alert
survey = alert.get("survey") or ""
flux = bool(st.session_state.get("flux")) and plots.light_curve(alert).has_flux
pictures = []
for which in stamps.STAMPS if view.cutouts else ():
    if which not in view.cutouts:
        pictures.append(card.StampPicture(which, None, f"no {which} stamp"))
        continue
    try:
        pictures.append(card.StampPicture(which, stamp_image(item.alerts_key, item.candid, which, stretch, zscale)))
    except errors.InvalidArgument as exc:  # one unreadable stamp must not hide the others
        pictures.append(card.StampPicture(which, None, f"cannot be shown: {exc}"))
if view.cutouts:
    first = next(iter(view.cutouts.values()))
    stamps_note = stamps.orientation_note(first, survey, alert.get("ra"), alert.get("dec")) + "; click to enlarge"
else:
    stamps_note = ("No stamps kept for this alert: the poll that stored it kept no cutouts, so there is no "
                   f"{keys.parse_batch(item.alerts_key).sibling('cutouts')!s} row for it. For a replayed path, "
                   "`skysift ingest reset-cursor PATH` then `skysift poll --from PATH --keep-cutouts` adds them.")
alert_card = card.Card(
    candid=item.candid, mine=mine,
    heading=f"#{session.position + 1} of {shown} · {alert['objectId']} · candid {alert['candid']}",
    light_curve_png=light_curve_image(item.alerts_key, item.candid, show_limits, flux),
    light_curve_caption="Detections with 1σ errors; open triangles: upper limits (diffmaglim), not magnitudes; "
                        "ringed and dotted: this alert.",
    stamps=pictures, stamps_note=stamps_note, facts=alertdata.facts(view, item))
others = session.others.get(item.candid) if mine else None  # blind: others' labels only once you labelled it
links = alertdata.links(alert["objectId"], survey, alert.get("ra"), alert.get("dec"))

# --- the buttons, keyed by the candid they label: a key pressed while this alert is on screen labels it -------
st.html(labelling.button_style(vocabulary().labels))
with st.container(horizontal=True, gap="small", key="label_buttons"):
    for lab in vocabulary().labels:
        st.button(lab.name, key=f"label_{lab.name}_{item.candid}", shortcut=lab.key, on_click=on_label,
                  args=(item.candid, lab.name), type="primary" if mine == lab.name else "secondary")
    st.button("undo", key="undo", shortcut=NAV_KEYS["undo"], on_click=on_undo, disabled=not session.undo_stack)
    st.button("prev", key="previous", shortcut=NAV_KEYS["previous"], on_click=on_move, args=(-1,),
              disabled=session.position == 0, help="previous alert")
    st.button("next", key="next", shortcut=NAV_KEYS["next"], on_click=on_move, args=(1,),
              disabled=session.position >= shown - 1, help="next alert")
st.caption(f"{counted_labels(model_tag)} {SKIP.capitalize()} (`{label_keys()[SKIP]}`) records that you saw the alert and chose not to label it; "
           "`U` undoes, `←`/`→` move.", unsafe_allow_html=True)
st.html(card.card_html(alert_card))

below_left, below_right = st.columns([3, 2])
with below_left:
    st.markdown(" · ".join(f"[{name}]({url})" for name, url in links.items()))
    if others:
        st.caption("Also labelled by " + ", ".join(f"{u}: {lab}" for u, lab in sorted(others.items())))
    if view.cutouts:
        with st.container(horizontal=True, gap="small"):
            for which, data in view.cutouts.items():
                st.download_button(f"{which} FITS", data, file_name=f"{alert['candid']}_{which}.fits.gz"
                                   if data[:2] == b"\x1f\x8b" else f"{alert['candid']}_{which}.fits",
                                   mime="application/fits", key=f"fits_{which}", icon=":material/download:",
                                   on_click="ignore")
    if plots.light_curve(alert).has_flux:
        st.toggle("Flux (nJy) instead of magnitude", key="flux")
with below_right:
    c1, c2 = st.columns([3, 1])
    c1.text_input("Comment (saved with your next label of this alert)", key=f"comment_{item.candid}")
    st.session_state.goto_number = session.position + 1
    c2.number_input("Go to #", min_value=1, max_value=shown, key="goto_number", on_change=on_goto)
if view.missing:
    st.caption("Not available yet for this batch: " + ", ".join(view.missing))
object_context(survey, alert)

history_and_agreement(session)
