"""A learner's JupyterLab speaks the language they chose on the hub's pages, through a real
spawn: the hub passes it as ONELAB_LANG and the image's Jupyter server picks JupyterLab's
default locale from it at each start (images/learner/jupyter/jupyter_server_config.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

TRANSLATION = "lab/api/settings/@jupyterlab/translation-extension:plugin"


def lab_locale(hub, name: str) -> str:
    """Start `name`'s server and read JupyterLab's locale as its page would."""
    hub.start(name)
    hub.wait_ready(name)
    r = hub.server(name, hub.token_for(name)).request("GET", TRANSLATION)
    assert r.status_code == 200, r.text[:300]
    data = r.json()
    default = data["schema"]["properties"]["locale"]["default"]
    return data["settings"].get("locale", default)  # the learner's own choice, else the default


def test_jupyterlab_follows_the_language_chosen_on_the_hub(platform):
    platform.add_learner("eunji")
    hub = platform.login("eunji")
    try:
        # the English switch on the hub's home page, as the learner clicks it
        page = hub.http.get(f"{platform.url}hub/home?lang=en", timeout=30)
        assert page.status_code == 200 and '<html lang="en"' in page.text
        assert lab_locale(hub, "eunji") == "en"
        hub.stop("eunji")

        # back to 한국어: the next start of the same learner's server is Korean
        hub.http.get(f"{platform.url}hub/home?lang=ko", timeout=30)
        assert lab_locale(hub, "eunji") == "ko_KR"
    finally:
        hub.stop("eunji")
