"""Logic behind the Streamlit app (streamlit_app/): data access, plots, stamps, the labelling session and the
MLflow round comparison, kept apart from Streamlit so it can be tested without a browser."""
