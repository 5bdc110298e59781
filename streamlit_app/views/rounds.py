"""Rounds page: held-out metrics per round, strategies side by side, one round's artifacts, two runs compared,
and "run a round now"."""

import pandas as pd
import streamlit as st

from skysift.app import rounds, ui
from skysift.modeltags import get_tag
from skysift.modeltags import tags as model_tags
from skysift.trainer.evaluation import Confusion

base, app = ui.settings()
uri = base.mlflow_tracking_uri


@st.cache_data(ttl=30, show_spinner=False)
def experiments(tracking_uri: str) -> list[rounds.ExperimentRef]:
    from skysift import config
    from skysift.trainer.settings import TrainerSettings

    return rounds.list_experiments(tracking_uri, config.load(TrainerSettings).mlflow_experiment_prefix)


@st.cache_data(ttl=30, show_spinner="Reading runs from MLflow…")
def runs_of(tracking_uri: str, refs: tuple[rounds.ExperimentRef, ...]):
    return rounds.search_runs(tracking_uri, list(refs))


@st.cache_data(max_entries=64, show_spinner="Fetching artifacts…")
def artifacts(tracking_uri: str, run_id: str) -> dict:
    return rounds.run_artifacts(tracking_uri, run_id)


def run_label(row) -> str:
    return f"{row['experiment']} · round {row['round']} · {row['strategy']} · n_train {row['n_train']}"


def run_round_panel() -> None:
    """One Trainer.RunRound call with the experiment, model tag and strategy chosen here (in a cluster too: the
    app needs no Kubernetes API access). Drawn before MLflow is read: starting a round does not need MLflow to
    answer the page."""
    from skysift.trainer.strategies import STRATEGIES

    done = "round_result" in st.session_state
    with st.expander("Run a round now", icon=":material/play_arrow:", expanded=done):
        tags = list(model_tags())
        tag_now = st.session_state.get("rounds_model_tag", app.model_tag)  # the view's choice, once made
        with st.form("run_round"):
            c1, c2, c3 = st.columns(3)
            experiment = c1.text_input("Experiment", value=st.session_state.get("rounds_experiment", app.experiment))
            tag = c2.selectbox("Model tag", tags, index=tags.index(tag_now) if tag_now in tags else 0)
            strategy = c3.selectbox("Strategy", STRATEGIES, index=STRATEGIES.index("uncertainty"))
            submitted = st.form_submit_button("Run a round now", type="primary")
        if submitted:
            st.session_state.pop("round_result", None)
            with st.spinner(f"Round of {experiment.strip()} running in the trainer…"), \
                    ui.reported("run a round", stop=False):
                st.session_state.round_result = ui.trainer().run_round(experiment.strip(), tag, strategy,
                                                                       timeout=app.round_timeout_s)
                experiments.clear()  # the new round and its run show at once
                runs_of.clear()
        if "round_result" in st.session_state:
            show_round_result(st.session_state.round_result)


def show_round_result(r) -> None:
    if r.created:
        st.success(f"Round **{r.round}** of {r.experiment} created ({r.strategy}): {r.message}")
        st.caption(f"Trained on {r.n_train}, held out {r.n_holdout}, scored {r.n_pool}; {r.queue_size} alerts queued"
                   + (f"; model version {r.model_version}{' (champion)' if r.champion_moved else ''}"
                      if r.model_version else ""))
    else:
        st.info(f"No round created: round **{r.round}** of {r.experiment} stays the latest. {r.message}")
    held = {k.removeprefix("holdout_"): v for k, v in r.metrics.items() if k.startswith("holdout_")}
    if held:
        st.dataframe(pd.DataFrame({"metric": list(held), "value": list(held.values())}), hide_index=True)
    for issue in r.quality_issues:
        st.warning(issue)


st.title("Rounds")
run_round_panel()
with ui.reported(f"read experiments from MLflow at {uri}"):
    refs = experiments(uri)
if not refs:
    st.info(f"No skysift experiment in MLflow at {uri} yet: run a round (above, or `skysift round`) or an "
            "experiment (`skysift experiment`).")
    st.stop()

tags = sorted({r.model_tag for r in refs})
model_tag = st.sidebar.selectbox("Model tag", tags, index=tags.index(app.model_tag) if app.model_tag in tags else 0,
                                 key="rounds_model_tag")
refs = [r for r in refs if r.model_tag == model_tag]
by_name = {r.experiment: r for r in refs}
metric = st.sidebar.selectbox("Metric", rounds.METRICS, index=rounds.METRICS.index("f1"))
classes = get_tag(model_tag).classes if model_tag in model_tags() else ("negative", "positive")

with ui.reported(f"read the champion of {model_tag} from MLflow"):
    champ = rounds.champion(uri, model_tag, base.mlflow_model_prefix) if model_tag in model_tags() else None
if champ:
    st.caption(f"Champion: **{champ['model']} version {champ['version']}** (experiment {champ['experiment'] or '?'}, "
               f"round {champ['round'] or '?'}, run `{champ['run_id']}`)")
else:
    st.caption(f"No champion registered for {model_tag} yet.")

tab_rounds, tab_strategies, tab_round, tab_compare = st.tabs(
    ["Per round", "Strategies", "One round", "Two runs side by side"])
champion_run = champ["run_id"] if champ else None


def counts_of(runs) -> dict[str, dict]:
    """Held-out confusion counts per run (rounds with a model log them), for the n and interval of each metric."""
    out = {}
    for run_id in runs["run_id"]:
        with ui.reported(f"fetch the artifacts of run {run_id}", stop=False):
            found = artifacts(uri, run_id).get("confusion_counts")
            if found:
                out[run_id] = found
    return out


def table_columns(table) -> dict:
    if "mlflow" not in table:
        return {}
    return {"mlflow": st.column_config.LinkColumn("MLflow", display_text="open run")}


with tab_rounds:
    names = sorted(by_name)
    default = names.index(app.experiment) if app.experiment in names else 0
    chosen = st.selectbox("Experiment", names, index=default, key="rounds_experiment")
    with ui.reported("read runs from MLflow"):
        runs = runs_of(uri, (by_name[chosen],))
    counts = counts_of(runs)
    table = rounds.with_intervals(rounds.round_table(runs), counts, champion_run)
    table["mlflow"] = [rounds.run_link(uri, e, r) for e, r in zip(runs["experiment_id"], runs["run_id"])]
    table = rounds.shown_table(table)
    st.dataframe(table.iloc[::-1], hide_index=True, width="stretch", column_config=table_columns(table))
    st.caption("Latest round first; ★ the champion's round. Beside each metric: the held-out alerts it rests on (n) "
               "and its 95 % interval (Wilson for accuracy, precision, recall; bootstrap over the held-out alerts "
               "for F1). Intervals that overlap are not a change.")
    curve = rounds.round_curve(runs, metric, counts)
    if not curve.empty:
        st.altair_chart(rounds.curves_chart(curve, metric, band="95 % interval")
                        + rounds.champion_mark(curve, champion_run), width="stretch")
    else:
        st.info(f"No held-out {metric} logged in {chosen} yet (rounds with too few labels are not evaluated).")

with tab_strategies:
    picked = st.multiselect("Experiments to compare (e.g. one per strategy and seed)", sorted(by_name),
                            default=sorted(by_name), key="strategy_experiments")
    if picked:
        with ui.reported("read runs from MLflow"):
            runs_all = runs_of(uri, tuple(by_name[p] for p in picked))
        curves = rounds.learning_curves(runs_all, metric)
        if not curves.empty:
            st.altair_chart(rounds.curves_chart(curves, metric), width="stretch")
            st.caption("Rounds: mean over the chosen experiments of each strategy; band: min to max.")
            st.dataframe(curves, hide_index=True)
        simulated = runs_all[runs_all["run_name"].fillna("").str.startswith("experiment_")]
        for _, parent in simulated.iterrows():
            with ui.reported(f"fetch the artifacts of run {parent['run_id']}", stop=False):
                summary = artifacts(uri, parent["run_id"]).get("learning_curves")
                sim = rounds.experiment_curves(summary if summary is not None else pd.DataFrame(), metric)
                if not sim.empty:
                    st.markdown(f"**`skysift experiment` {parent['run_name'].removeprefix('experiment_')}** "
                                f"(simulated on labelled alerts; band: ±1 std over seeds)")
                    st.altair_chart(rounds.curves_chart(sim, metric, band="±1 std"), width="stretch")
        if curves.empty and simulated.empty:
            st.info(f"No held-out {metric} in these experiments yet.")

with tab_round:
    with ui.reported("read runs from MLflow"):
        runs_all = runs_of(uri, tuple(refs))
    rounds_only = runs_all.dropna(subset=["round"]).sort_values("start_time", ascending=False)
    if rounds_only.empty:
        st.info("No runs yet.")
    else:
        labels = {row["run_id"]: run_label(row) for _, row in rounds_only.iterrows()}
        run_id = st.selectbox("Round (latest first)", list(labels), format_func=labels.get, key="one_round")
        row = rounds_only.set_index("run_id").loc[run_id]
        with ui.reported(f"fetch the artifacts of run {run_id}"):
            arts = artifacts(uri, run_id)
        link = rounds.run_link(uri, row["experiment_id"], run_id)
        if link:
            st.markdown(f"[This round's run in MLflow]({link})")
        c1, c2, c3 = st.columns([1, 1, 1.4])
        with c1:
            st.markdown("**Confusion matrix (held-out)**")
            if "confusion_counts" in arts:
                confusion = Confusion.from_logged(arts["confusion_counts"], classes)
                st.image(confusion.png(f"n = {confusion.n} held-out alerts"),
                         caption=f"held-out confusion matrix, round {row['round']}")
            elif "confusion" in arts:
                st.image(arts["confusion"], caption=f"held-out confusion matrix, round {row['round']}")
            else:
                st.caption("not logged for this round")
        with c2:
            st.markdown("**Class balance of the training set**")
            balance = rounds.class_balance(row, classes)
            if balance.empty:
                st.caption("not logged for this round")
            else:
                st.altair_chart(rounds.class_chart(balance), width="stretch")
        with c3:
            st.markdown("**Permutation importance**")
            if "importance_csv" in arts:
                st.altair_chart(rounds.importance_chart(arts["importance_csv"]), width="stretch")
                with st.expander("as a table"):
                    st.dataframe(arts["importance_csv"], hide_index=True)
            elif "importance_png" in arts:
                st.image(arts["importance_png"], caption="permutation importance")
            else:
                st.caption("not logged for this round")

with tab_compare:
    with ui.reported("read runs from MLflow"):
        runs_all = runs_of(uri, tuple(refs))
    if len(runs_all) < 2:
        st.info("Two runs are needed to compare.")
    else:
        labels = {row["run_id"]: run_label(row) for _, row in runs_all.iterrows()}
        ids = list(labels)
        a_col, b_col = st.columns(2)
        run_a = a_col.selectbox("Run A", ids, index=0, format_func=labels.get, key="run_a")
        run_b = b_col.selectbox("Run B", ids, index=1, format_func=labels.get, key="run_b")
        only = st.toggle("Only what differs", value=True)
        indexed = runs_all.set_index("run_id", drop=False)
        st.dataframe(rounds.differing(indexed.loc[run_a], indexed.loc[run_b], only), hide_index=True,
                     width="stretch")
        for col, rid in ((a_col, run_a), (b_col, run_b)):
            with ui.reported(f"fetch the artifacts of run {rid}"):
                arts = artifacts(uri, rid)
            for key, what in (("confusion", "held-out confusion matrix"), ("importance_png", "permutation importance")):
                if key in arts:
                    col.image(arts[key], caption=f"{labels[rid]}: {what}")
