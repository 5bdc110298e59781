"""Streamlit glue shared by the pages: settings, cached clients, the login gate, and errors as sentences.

Everything here is thin; the logic it calls lives in the other modules of :mod:`skysift.app`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import contextmanager
from urllib.parse import quote, unquote

import streamlit as st

from skysift import config, errors
from skysift.app.settings import AppSettings, login_mode, oidc_configured, password_ok

NAME_FIELD = "Your name (labels are attributed to it)"
NAME_COOKIE = "skysift_name"  # the name this browser gave last, for its next sessions


@st.cache_resource
def settings() -> tuple[config.Settings, AppSettings]:
    """The services' settings and the app's, from the same environment as the services."""
    return config.load(), config.load(AppSettings)


@st.cache_resource
def store():
    from skysift.store import open_store

    return open_store(settings=settings()[0])


@st.cache_resource
def batches():
    from skysift.app.alertdata import BatchCache

    return BatchCache(store())


@st.cache_resource
def trainer():
    from skysift.app.trainer import TrainerClient

    base, app = settings()
    return TrainerClient(base, timeout=app.rpc_timeout_s)


@contextmanager
def reported(what: str, stop: bool = True):
    """Show a failure of ``what`` as a clear message instead of a stack trace, and stop the page unless the rest
    of it does not depend on ``what`` (``stop=False``)."""
    try:
        yield
    except errors.SkysiftError as exc:
        icon = ":material/cloud_off:" if isinstance(exc, errors.Unavailable) else ":material/error:"
        st.error(f"Cannot {what}: {exc}", icon=icon)
        if stop:
            st.stop()


def auth_secrets() -> Mapping | None:
    """The ``[auth]`` section of ``.streamlit/secrets.toml`` (what ``st.login`` reads), None without one."""
    try:
        return st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - no secrets file at all: Streamlit raises, which means "not configured"
        return None


def current_user() -> str:
    """The labeller's name: from the OIDC identity, the password form, or the sidebar; stops the page until known."""
    try:
        _, app = settings()
        mode = login_mode(app, oidc_configured(auth_secrets()))
    except errors.ConfigError as exc:
        st.error(f"The app will not start: {exc}", icon=":material/lock:")
        st.stop()
    if mode == "oidc":
        if not st.user.is_logged_in:
            _oidc_gate()
            st.stop()
        user = str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))
        st.sidebar.caption(f"Signed in as **{user}**")
        st.sidebar.button("Log out", on_click=st.logout)
        return user
    if mode == "password":
        if not st.session_state.get("user"):
            _password_form(app)
            st.stop()
        st.sidebar.caption(f"Signed in as **{st.session_state.user}**")
        st.sidebar.button("Sign out", on_click=st.session_state.pop, args=("user", None))
        return st.session_state.user
    # The name lives in plain session state, not only in the widget: a rerun that interrupts a run before the
    # sidebar is drawn would otherwise drop the widget's value and sign the labeller out mid-queue. A new session
    # (a page opened by its URL, a reload, another tab) starts from the name this browser gave last: the rounds
    # page opened by URL started unnamed.
    st.session_state.setdefault("user_name", _remembered_name() or app.user)
    st.sidebar.text_input(NAME_FIELD, value=st.session_state.user_name,
                          key="user_name_input", on_change=_rename)
    if st.session_state.pop("name_just_given", False):
        _leave_the_name_field(st.session_state.user_name)
    return st.session_state.user_name


def _remembered_name() -> str:
    """The name this browser gave last (its cookie); a session without a browser's cookies (AppTest) has none."""
    cookie = st.context.cookies.get(NAME_COOKIE)
    return unquote(cookie).strip() if isinstance(cookie, str) else ""


def _rename() -> None:
    st.session_state.user_name = st.session_state.user_name_input.strip()
    st.session_state.name_just_given = True


def _leave_the_name_field(name: str) -> None:
    """A text field keeps the focus after Enter, and the label keys are then typed into it: a scanner's first '3'
    renamed them instead of labelling. Streamlit has no blur, so a zero-height component does it once per rename,
    and keeps the name in a cookie for this browser's next sessions (Streamlit cannot set one)."""
    from streamlit import components

    remembered = json.dumps(quote(name, safe=""))  # a quoted name holds no quote, semicolon or '<'
    with st.sidebar:
        components.v1.html("<script>const d = window.parent.document; const e = d.activeElement;"
                           f" if (e && e.getAttribute('aria-label') === {NAME_FIELD!r}) {{ e.blur(); }}"
                           f" d.cookie = '{NAME_COOKIE}=' + {remembered} + '; path=/; max-age=31536000; SameSite=Lax';"
                           "</script>", height=0)


def _oidc_gate() -> None:
    # A refused or failed login (an error from the provider, a rejected client secret) brings the browser back
    # here with nothing to tell it apart from a first visit: Streamlit only logs why, so say where to look.
    st.title("skysift")
    st.write("Log in with your organisation's account: labels are attributed to it.")
    st.button("Log in", on_click=st.login, type="primary")
    st.caption("Back here after logging in? The login did not complete (refused by the identity provider, or the "
               "app's OIDC client is misconfigured); the app's log says why.")


def _password_form(app: AppSettings) -> None:
    st.title("skysift")
    with st.form("login"):
        name = st.text_input("Your name")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in", type="primary"):
            if not name.strip():
                st.error("Give your name: labels are attributed to it.")
            elif not password_ok(app, password):
                st.error("Wrong password.")
            else:
                st.session_state.user = name.strip()
                st.rerun()
