"""The login gate: with accounts configured, nothing of the run is drawn until someone logs in."""

from __future__ import annotations

import copy
import secrets

import streamlit as st

from audit.dashboard_auth import DashboardAuth

FAILED = "Wrong username or password."


@st.cache_resource(show_spinner=False)
def _credentials(auth: DashboardAuth) -> dict:
    return auth.credentials()  # bcrypt-hashes plaintext passwords once per server process


@st.cache_resource(show_spinner=False)
def _cookie_key() -> str:
    # Re-login cookies are off (expiry 0), but the library still decodes a cookie of its name if the
    # browser sends one: a key nobody knows, new per server process, makes any such cookie invalid.
    return secrets.token_urlsafe(32)


def require_login(auth: DashboardAuth) -> str:
    """Draw the login form and stop the script run until the password checks; return the username."""
    import streamlit_authenticator as stauth
    from streamlit_authenticator.utilities import LoginError

    authenticator = stauth.Authenticate(
        copy.deepcopy(_credentials(auth)),  # the library writes into it; sessions must not share that
        cookie_name="mmaudit_review_login",
        cookie_key=_cookie_key(),
        cookie_expiry_days=0,  # no cookie: a reload asks for the password again
        auto_hash=False,
        login_sleep_time=0,  # the sleep waits for a cookie that is never set
    )
    try:
        authenticator.login(location="main", key="mmaudit-login")
    except LoginError:
        st.error(FAILED)
        st.stop()
    status = st.session_state.get("authentication_status")
    if status is False:
        st.error(FAILED)
    if not status:
        st.stop()
    with st.sidebar:
        st.text(f"signed in as {st.session_state['username']}")
        authenticator.logout("Log out", location="sidebar", key="mmaudit-logout")
    if not st.session_state.get("authentication_status"):
        st.rerun()  # logged out just now: redraw as the login form, not the rest of this run
    return str(st.session_state["username"])
