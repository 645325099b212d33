"""The private Textual API the lab and its tests use, named in pyproject.toml where Textual
is pinned: each is checked here, so a Textual that drops one fails this file by name
rather than a lab that quietly paints late or repaints everything."""

from __future__ import annotations

import inspect

from textual.app import App
from textual.widgets import Footer


def test_footer_bindings_ready_is_a_reactive():
    from textual.reactive import Reactive

    assert isinstance(Footer.__dict__.get("_bindings_ready")
                      or getattr(Footer, "_reactives", {}).get("_bindings_ready"), Reactive)


def test_the_compositor_keeps_a_visible_map_and_renders():
    from textual._compositor import Compositor

    source = inspect.getsource(Compositor)
    assert "self._visible_map" in source
    assert callable(Compositor.render_update) and callable(Compositor.render_strips)


async def test_a_screen_has_a_compositor_and_the_app_its_notifications():
    app = App()
    async with app.run_test() as pilot:
        assert hasattr(app.screen, "_compositor")
        assert hasattr(app.screen._compositor, "_visible_map")
        app.notify("x")
        await pilot.pause()
        assert [n.message for n in app._notifications] == ["x"]
