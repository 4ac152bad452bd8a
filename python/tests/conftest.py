"""Paths the tests need: ../shared (models, texts, tasks; DASHQ_SHARED), the
repository's GPTQ fixture, and the CLI for the same-bytes checks (DASHQ_CLI,
default build/dashq; required when DASHQ_REQUIRE_CLI=1, as scripts/python.sh sets)."""
import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
    p = pathlib.Path(os.environ.get("DASHQ_SHARED", REPO.parent / "shared"))
    if not (p / "models" / "stories260K").is_dir():
        pytest.fail(f"no bundled models under {p} (set DASHQ_SHARED)")
    return p


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    return REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def cli() -> str:
    p = os.path.abspath(os.environ.get("DASHQ_CLI", str(REPO / "build" / "dashq")))
    if not (os.path.isfile(p) and os.access(p, os.X_OK)):
        if os.environ.get("DASHQ_REQUIRE_CLI") == "1":
            pytest.fail(f"no dashq CLI at {p} (DASHQ_CLI)")
        pytest.skip(f"no dashq CLI at {p}: build it (cmake --build build) or set DASHQ_CLI")
    return p


@pytest.fixture()
def work(tmp_path, shared, monkeypatch) -> pathlib.Path:
    """A temporary folder as the working directory, ../shared reached as the
    relative link shared/ (outputs record relative model paths, as golden.sh runs)."""
    (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(tmp_path)
    return tmp_path
