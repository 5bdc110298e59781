"""skysift's Streamlit app: label alerts, compare rounds and strategies, build datasets.

Run with ``streamlit run streamlit_app/app.py`` (``make dev`` starts it) in the same environment as the
services: ``SKYSIFT_*`` for the store, trainer and MLflow, ``SKYSIFT_APP_*`` for the app itself.
"""

import streamlit as st

from skysift.app import ui

st.set_page_config(page_title="skysift", page_icon=":material/flare:", layout="wide")

with ui.reported("read the settings"):
    ui.settings()
st.session_state.labeller = ui.current_user()

# The pages live in views/, not pages/: Streamlit serves a pages/ directory's files by URL on their own (/rounds ran
# views/rounds.py without this script: no wide layout, no settings, no user, a second navigation menu).
page = st.navigation([
    st.Page("views/label.py", title="Label", icon=":material/label:", default=True),
    st.Page("views/rounds.py", title="Rounds", icon=":material/monitoring:"),
    st.Page("views/datasets.py", title="Datasets", icon=":material/dataset:"),
])
page.run()
