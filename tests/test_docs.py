"""Every Python code block of the docs guides runs, in order, one namespace per page, so the
guides cannot rot. A block preceded by a `<!-- not run: reason -->` line is skipped; a page
whose first line is `<!-- requires: module -->` runs where that module is installed."""

import pathlib
import re

import keras
import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
_SKIP = "<!-- not run:"
_REQUIRES = re.compile(r"^<!-- requires: (\w+) -->")


def python_blocks(page):
    """(line number, code) of each Python block of `page` that is meant to run."""
    text = page.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not before.startswith(_SKIP):
            blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


PAGES = sorted(p for p in DOCS.glob("*.md") if python_blocks(p))


def test_the_guides_have_code_to_run():
    assert {p.name for p in PAGES} >= {"cka-sr.md", "pruning.md", "sparse-training.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_code_runs(page, tmp_path, monkeypatch):
    required = _REQUIRES.match(page.read_text())
    if required:
        pytest.importorskip(required.group(1))
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    namespace = {"__name__": f"docs_{page.stem}"}
    for line, code in python_blocks(page):
        exec(compile(code, f"{page.name}:{line}", "exec"), namespace)


def test_readme_snippets_name_real_apis():
    """The README's quick starts use placeholders (`model`, `x`), so they are not run; they
    must parse, and every `keras_cka_sr.X` and `pruning.X` they name must exist."""
    import keras_cka_sr
    from keras_cka_sr import pruning

    readme = DOCS.parent / "README.md"
    names = []
    for line, code in python_blocks(readme):
        compile(code, f"README.md:{line}", "exec")
        names += re.findall(r"\b(keras_cka_sr|pruning)\.(\w+)", code)
    modules = {"keras_cka_sr": keras_cka_sr, "pruning": pruning}
    assert len(names) >= 8
    missing = [f"{m}.{n}" for m, n in names if not hasattr(modules[m], n)]
    assert not missing


def test_readme_links_and_pictures_exist():
    readme = (DOCS.parent / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert len(local) >= 10
    assert [t for t in local if not (DOCS.parent / t).exists()] == []
    assert len(readme.splitlines()) <= 200
