"""Workspace resolution: a fresh directory by default; a requested one only strictly below
an allowed root, after resolving `..` and symlinks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from hybrid_agent.agents.workspace import WorkspaceNotAllowed, resolve_workspace
from hybrid_agent.config import Settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, root: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", workspace_roots=[root])


class TestFreshWorkspace:
    def test_none_creates_a_directory_named_for_the_task(self, settings: Settings) -> None:
        path = resolve_workspace(None, settings=settings, task_id="t-1")
        assert path == settings.workspaces_dir / "t-1"
        assert path.is_dir()

    @pytest.mark.parametrize("task_id", ["", ".", "..", "../escape", "a/b"])
    def test_a_task_id_that_is_not_one_path_component_is_refused(self, settings: Settings, task_id: str) -> None:
        with pytest.raises(ValueError, match="task id"):
            resolve_workspace(None, settings=settings, task_id=task_id)


class TestRequestedWorkspace:
    def test_a_directory_below_a_root_is_created_and_returned(self, settings: Settings, root: Path) -> None:
        path = resolve_workspace(str(root / "project" / "src"), settings=settings, task_id="t")
        assert path == root / "project" / "src"
        assert path.is_dir()

    def test_an_existing_directory_is_kept(self, settings: Settings, root: Path) -> None:
        (root / "repo").mkdir()
        (root / "repo" / "file").write_text("kept")
        path = resolve_workspace(str(root / "repo"), settings=settings, task_id="t")
        assert (path / "file").read_text() == "kept"

    def test_a_symlink_to_a_place_below_the_root_resolves_to_its_target(
        self, settings: Settings, root: Path
    ) -> None:
        (root / "real").mkdir()
        (root / "alias").symlink_to(root / "real")
        assert resolve_workspace(str(root / "alias"), settings=settings, task_id="t") == root / "real"

    def test_outside_every_root_is_refused_naming_path_and_roots(
        self, settings: Settings, root: Path, tmp_path: Path
    ) -> None:
        with pytest.raises(WorkspaceNotAllowed) as refusal:
            resolve_workspace(str(tmp_path / "elsewhere"), settings=settings, task_id="t")
        assert "elsewhere" in str(refusal.value)
        assert str(root) in str(refusal.value)
        assert not (tmp_path / "elsewhere").exists()

    def test_dotdot_out_of_a_root_is_refused(self, settings: Settings, root: Path) -> None:
        with pytest.raises(WorkspaceNotAllowed):
            resolve_workspace(f"{root}/../outside", settings=settings, task_id="t")

    def test_a_symlink_out_of_a_root_is_refused(self, settings: Settings, root: Path, tmp_path: Path) -> None:
        (tmp_path / "outside").mkdir()
        (root / "link").symlink_to(tmp_path / "outside")
        with pytest.raises(WorkspaceNotAllowed):
            resolve_workspace(str(root / "link" / "sub"), settings=settings, task_id="t")
        assert not (tmp_path / "outside" / "sub").exists()

    def test_a_root_itself_is_refused(self, settings: Settings, root: Path) -> None:
        with pytest.raises(WorkspaceNotAllowed):
            resolve_workspace(str(root), settings=settings, task_id="t")

    def test_a_file_is_refused(self, settings: Settings, root: Path) -> None:
        (root / "file").write_text("")
        with pytest.raises(WorkspaceNotAllowed, match="not a directory"):
            resolve_workspace(str(root / "file"), settings=settings, task_id="t")


class TestDefaultRoots:
    """Without HA_WORKSPACE_ROOTS the roots are the workspaces dir and the system temp dir."""

    @pytest.fixture
    def settings(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
        monkeypatch.delenv("HA_WORKSPACE_ROOTS", raising=False)
        return Settings(data_dir=tmp_path / "data")

    def test_the_temp_dir_itself_is_refused(self, settings: Settings) -> None:
        with pytest.raises(WorkspaceNotAllowed):
            resolve_workspace(tempfile.gettempdir(), settings=settings, task_id="t")

    def test_etc_through_the_temp_dir_is_refused(self, settings: Settings) -> None:
        with pytest.raises(WorkspaceNotAllowed):
            resolve_workspace(f"{tempfile.gettempdir()}/../etc", settings=settings, task_id="t")

    def test_a_symlink_in_the_temp_dir_to_etc_is_refused(self, settings: Settings, tmp_path: Path) -> None:
        link = tmp_path / "etc-link"
        link.symlink_to("/etc")
        with pytest.raises(WorkspaceNotAllowed):
            resolve_workspace(str(link), settings=settings, task_id="t")

    def test_below_the_workspaces_dir_is_allowed(self, settings: Settings) -> None:
        path = resolve_workspace(str(settings.workspaces_dir / "shared"), settings=settings, task_id="t")
        assert path.is_dir()
