"""Figures: what they show, read off the matplotlib figure before it is saved."""

import numpy as np
import pytest

from deepcluster import plots


@pytest.fixture
def kept(monkeypatch):
    """The figures plots._save is handed, instead of closed."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_confusion_rows_carry_the_class_folders_names(kept, tmp_path):
    y = np.array([0, 0, 1, 1, 2, 2])
    plots.confusion(y, y[::-1], tmp_path / "c.png", class_names=["cats", "dogs", "owls"])
    ax = kept[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cats", "dogs", "owls"]
