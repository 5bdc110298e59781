"""Datasets page: collect a training dataset with AstrID's parameters, list datasets, inspect one."""

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from skysift import errors
from skysift.alerts import surveys
from skysift.app import rounds, ui
from skysift.modeltags import tags
from skysift.trainer.datasets import DatasetRequest

base, app = ui.settings()
client = ui.trainer()

QUALITY_HELP = ("1 is a clean, balanced set. The score multiplies the share of rows without a duplicate candid, "
                "without missing features and without labellers' conflicts, and the minority class's share "
                "relative to the minimum wanted; the issues column says which check fell short.")

st.title("Datasets")

with st.expander("Collect a new dataset", expanded=False), st.form("collect"):
    st.caption("The alerts stored (ingested) between From and To, labelled by humans where they were, else by the "
               "champion where it is confident enough.")
    name = st.text_input("Name", placeholder="e.g. galactic-2025-q1")
    c1, c2 = st.columns(2)
    survey = c1.selectbox("Survey", surveys.names())
    model_tag = c2.selectbox("Model tag", list(tags()), index=list(tags()).index(app.model_tag)
                             if app.model_tag in tags() else 0)
    today = datetime.now(UTC).date()
    start = c1.date_input("From", today - timedelta(days=30), help="Ingest time (UTC): when skysift stored the "
                          "alert, not when it was observed.")
    end = c2.date_input("To (inclusive)", today, help="Ingest time (UTC), this whole day included.")
    threshold = c1.number_input("Score threshold", min_value=0.5, max_value=1.0, value=DatasetRequest.score_threshold,
                                step=0.05, help="Confidence the champion's prediction needs to fill in as a label "
                                                "where no human labelled the alert (the CLI's default too).")
    max_samples = c2.number_input("Max samples", min_value=1, value=1000, step=100)
    prefer = st.checkbox("Prefer human-validated labels", value=True)
    if st.form_submit_button("Collect", type="primary"):
        if not name.strip():
            st.error("Give the dataset a name.")
        else:
            try:
                made = client.collect_dataset(
                    name.strip(), survey, datetime.combine(start, time.min, UTC),
                    datetime.combine(end + timedelta(days=1), time.min, UTC), float(threshold),
                    prefer, int(max_samples), model_tag)
            except errors.SkysiftError as exc:  # say why, and keep the list below visible
                st.error(f"Cannot collect the dataset: {exc}")
            else:
                st.success(f"Dataset {made.dataset_id} collected: {made.n_samples} samples, "
                           f"quality {made.quality_score:.2f}")

with ui.reported("list datasets from the trainer"):
    datasets = client.list_datasets()
if not datasets:
    st.info("No dataset yet: collect one above.")
    st.stop()

table = pd.DataFrame([{
    "dataset_id": d.dataset_id, "name": d.name, "samples": d.n_samples, "quality": d.quality_score,
    "classes": ", ".join(f"{k}: {v}" for k, v in sorted(d.class_counts.items())),
    "issues": "; ".join(d.quality_issues),
} for d in datasets])
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"quality": st.column_config.NumberColumn(format="%.2f", help=QUALITY_HELP)})
st.caption(f"Quality: {QUALITY_HELP}")

ids = [d.dataset_id for d in datasets]
chosen = st.selectbox("Inspect", ids, format_func=lambda i: f"{i} · {next(d.name for d in datasets if d.dataset_id == i)}")
with ui.reported(f"read dataset {chosen}"):
    ds = client.get_dataset(chosen)
c1, c2, c3 = st.columns(3)
c1.metric("Samples", ds.n_samples)
c2.metric("Quality", f"{ds.quality_score:.2f}")
c3.metric("Classes", len(ds.class_counts))
if ds.class_counts:
    st.altair_chart(rounds.class_chart(pd.DataFrame({"class": list(ds.class_counts),
                                                     "count": list(ds.class_counts.values())})), width="stretch")
for issue in ds.quality_issues:
    st.warning(issue)
if ds.samples_key:
    with ui.reported(f"read {ds.samples_key} from the store"):
        samples = ui.store().read_table(ds.samples_key)
    st.markdown(f"**Samples** (`{ds.samples_key}`, first 200 of {samples.num_rows})")
    preview = samples.slice(0, 200).to_pandas()
    if "candid" in preview:
        preview["candid"] = preview["candid"].astype(str)  # 19-digit ids exceed a browser's exact integers
    st.dataframe(preview, hide_index=True)
with st.expander("Manifest"):
    st.json(ds.manifest)
