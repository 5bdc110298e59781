"""Label page: the current round's queue, one alert at a time, one key per label; one's own history and how far
labellers agree."""

import secrets

import pandas as pd
import streamlit as st

from skysift import errors
from skysift.app import agreement, alertdata, champion, plots, stamps, ui
from skysift.app.labelling import SORTS, LabelSession
from skysift.modeltags import LABEL_KEYS, LABELS, MODEL_TAGS
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
    return stamps.stamp_png(view.cutouts[which], stretch=stretch, zscale=zscale)


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


def _guard(action, *args) -> None:
    """Run a session action from a callback; keep its error to show on the next run instead of a traceback."""
    try:
        action(*args)
        st.session_state.pop("label_error", None)
    except errors.SkysiftError as exc:
        st.session_state.label_error = str(exc)


def on_label(candid: int, label: str) -> None:
    comment = st.session_state.get(f"comment_{candid}", "").strip()
    _guard(st.session_state.label_session.label, candid, label, comment)


def on_undo() -> None:
    _guard(st.session_state.label_session.undo)


def on_move(step: int) -> None:
    st.session_state.label_session.move(step)


def on_goto() -> None:
    _guard(st.session_state.label_session.goto, int(st.session_state.goto_number) - 1)


def on_review() -> None:
    st.session_state.label_session.review()
    st.session_state.show_labelled = True  # the sidebar toggle, drawn after this callback


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
                found = agreement.agreement(ui.trainer().labels(candids, history=True))
                st.caption(f"{found.n_shared} alerts labelled by more than one user (skips left out); Cohen's kappa is "
                           "agreement corrected for chance: 1 perfect, 0 no better than chance, – undefined (a single "
                           "label between the pair).")
                st.dataframe(pd.DataFrame([{"labeller": p.user_a, "other labeller": p.user_b, "alerts": p.n,
                                            "agreed": p.agreed, "agreement %": round(p.percent, 1),
                                            "Cohen's kappa": None if p.kappa is None else round(p.kappa, 3)}
                                           for p in found.pairs],
                                          columns=["labeller", "other labeller", "alerts", "agreed", "agreement %",
                                                   "Cohen's kappa"]), hide_index=True)
                st.dataframe(pd.DataFrame([{"candid": str(d["candid"]), "objectId": d["objectId"],
                                            "labels": " · ".join(f"{u}: {lab}" for u, lab in d["labels"].items())}
                                           for d in found.disagreements], columns=["candid", "objectId", "labels"]),
                             hide_index=True)


# --- sidebar: what to label and how to show it -------------------------------------------------------------
with st.sidebar:
    with ui.reported("list experiments in the store"):
        known = experiments_in_store()
    choices = sorted(set(known) | {app.experiment})
    experiment = st.selectbox("Experiment", choices, index=choices.index(app.experiment))
    tags = list(MODEL_TAGS)
    model_tag = st.selectbox("Model tag", tags, index=tags.index(app.model_tag) if app.model_tag in tags else 0)
    show_limits = st.toggle("Upper limits", value=True)
    stretch = st.selectbox("Stamp stretch", stamps.STRETCHES, index=0)
    zscale = st.toggle("ZScale (else 0.5–99.5 % cut)", value=True)
    sort_by = st.selectbox("Sort by", list(SORTS), format_func=SORTS.get, key="sort_by",
                           help="Random is the control: what labels would look like without a model choosing.")
    show_labelled = st.toggle("Show alerts I already labelled", key="show_labelled")
    if st.button("Reload queue", icon=":material/refresh:"):
        st.session_state.pop("label_session_key", None)

st.title("Label alerts")
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

# --- the buttons, with their keys; the candid is bound now, so a click labels the alert on screen ------------
with st.container(horizontal=True, gap="small"):
    for label in LABELS:
        st.button(label, key=f"label_{label}", shortcut=LABEL_KEYS[label], on_click=on_label,
                  args=(item.candid, label), type="primary" if mine == label else "secondary")
    st.button("undo", key="undo", shortcut=NAV_KEYS["undo"], on_click=on_undo, disabled=not session.undo_stack,
              icon=":material/undo:")
    st.button("prev", key="previous", shortcut=NAV_KEYS["previous"], on_click=on_move, args=(-1,),
              disabled=session.position == 0, icon=":material/arrow_back:")
    st.button("next", key="next", shortcut=NAV_KEYS["next"], on_click=on_move, args=(1,),
              disabled=session.position >= shown - 1, icon=":material/arrow_forward:")
legend = " · ".join(f"`{LABEL_KEYS[label]}` {label}" for label in LABELS)
st.caption(f"Keys: {legend} · `U` undo · `←`/`→` previous/next. Skip (`0`) records that you saw the alert "
           "and chose not to label it.")

# --- the alert ---------------------------------------------------------------------------------------------
with ui.reported(f"read alert {item.candid} from the store"):
    view = alertdata.load_alert(ui.batches(), item.alerts_key, item.candid)
alert = view.alert
head = f"#{session.position + 1} of {shown} · {alert['objectId']} · candid {alert['candid']}"
if mine:
    head += f" · your label: **{mine}**"
st.subheader(head)
others = session.others.get(item.candid)
if others:
    st.caption("Also labelled by " + ", ".join(f"{u}: {lab}" for u, lab in sorted(others.items())))

left, right = st.columns([3, 2])
with left:
    curve = plots.light_curve(alert)
    flux = curve.has_flux and st.toggle("Flux (nJy) instead of magnitude", value=False, key="flux")
    st.image(light_curve_image(item.alerts_key, item.candid, show_limits, bool(flux)),
             caption="Light curve: detections with 1σ errors; open triangles are upper limits (diffmaglim), "
                     "not magnitudes; the ringed point is this alert.")
    if view.cutouts:
        stamp_cols = st.columns(len(stamps.STAMPS))
        for col, which in zip(stamp_cols, stamps.STAMPS):
            if which not in view.cutouts:
                col.caption(f"no {which} stamp")
                continue
            try:
                col.image(stamp_image(item.alerts_key, item.candid, which, stretch, zscale), caption=which,
                          width="stretch")
            except errors.InvalidArgument as exc:  # one unreadable stamp must not hide the others
                col.warning(f"{which} stamp cannot be shown: {exc}")
    else:
        st.info("No stamps kept for this alert: the poll stored no cutouts (`--no-cutouts`), "
                f"so there is no {keys.parse_batch(item.alerts_key).sibling('cutouts')!s} row for it.",
                icon=":material/hide_image:")
with right:
    st.dataframe(pd.DataFrame(alertdata.facts(view, item), columns=["fact", "value"]), hide_index=True,
                 width="stretch")
    if view.missing:
        st.caption("Not available yet for this batch: " + ", ".join(view.missing))
    links = alertdata.links(alert["objectId"], alert.get("survey") or "", alert.get("ra"), alert.get("dec"))
    st.markdown(" · ".join(f"[{name}]({url})" for name, url in links.items()))
    st.text_input("Comment (optional, saved with your next label of this alert)", key=f"comment_{item.candid}")
    st.session_state.goto_number = session.position + 1
    st.number_input("Go to alert #", min_value=1, max_value=shown, key="goto_number", on_change=on_goto)

history_and_agreement(session)
