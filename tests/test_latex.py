"""The LaTeX of the tables: every special character escaped for pdflatex, labels unique across
experiments, wide tables shrunk to the line width, and a document of them that compiles."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from test_tables import fabricate

from wslbench.cli import main
from wslbench.published import PublishedTable, tex
from wslbench.tables import (
    RESIZE_ABOVE,
    Cell,
    Table,
    aggregate,
    build_tables,
    collect_runs,
    label_key,
    latex_escape,
)

SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}", "±": r"$\pm$", "↑": r"$\uparrow$",
            "↓": r"$\downarrow$", "–": "--", "†": r"\dag{}", "≥": r"$\geq$", "≤": r"$\leq$", "τ": r"$\tau$"}


@pytest.mark.parametrize("char", list(SPECIALS))
def test_each_special_character_becomes_its_latex(char):
    assert latex_escape(char) == SPECIALS[char]
    assert latex_escape(f"a{char}b") == f"a{SPECIALS[char]}b"
    assert tex(char) == SPECIALS[char]  # published.py writes with the same function


def test_escapes_are_not_escaped_again_and_round_trip_through_a_latex_parser():
    """The backslash and braces an escape inserts are left alone; a LaTeX parser reads the text back."""
    from pylatexenc.latex2text import (
        LatexNodes2Text,
        MacroTextSpec,
        get_default_latex_context_db,
    )

    text = r"a\b {x} & 50% $1 #2 _ ~ ^ u > 0 < 1 ± ↑ ↓ – † ≥ ≤ τ"
    out = latex_escape(text)
    assert out.startswith(r"a\textbackslash{}b \{x\} \& 50\% \$1 \#2 \_ \textasciitilde{} \textasciicircum{} "
                          r"u \textgreater{} 0 \textless{} 1 ")
    assert not re.search(r"(?<!\\)[&%#_^~<>]", out.replace("$", ""))  # no bare special left
    db = get_default_latex_context_db()
    db.add_context_category("wslbench", prepend=True, macros=[  # pylatexenc does not know these three
        MacroTextSpec("textless", "<"), MacroTextSpec("textgreater", ">"), MacroTextSpec("textasciicircum", "^")])
    assert LatexNodes2Text(latex_context=db).latex_to_text(out) == text


def test_cell_keeps_its_own_braces_around_escaped_content():
    c = aggregate([0.25])
    c.bold, c.short, c.arrow = True, True, "up"
    assert c.text("latex") == r"\textbf{0.25} $\uparrow$ {\scriptsize(1)\dag{}}"
    assert Cell().text("latex") == "--"


def test_erasing_row_reads_u_greater_than_zero(tmp_path):
    fabricate(tmp_path)
    t3 = build_tables(collect_runs(tmp_path))[2]
    assert t3.number == 3 and r"with erasing (u \textgreater{} 0) &" in t3.to_latex()
    assert ">" not in t3.to_latex().replace(r"\ifdim\width>", "")


def test_labels_are_unique_across_experiments(tmp_path):
    fabricate(tmp_path / "runs" / "exp_a")
    fabricate(tmp_path / "runs" / "exp-b")
    res = CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t"),
                                    "--format", "latex"])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "t").rglob("table*.tex"))
    labels = [lab for f in files for lab in re.findall(r"\\label\{([^}]*)\}", f.read_text())]
    assert len(files) == 12 and len(labels) == len(files) == len(set(labels))
    assert "tab:wslbench-exp-a-3" in labels and "tab:wslbench-exp-b-3" in labels
    assert all(re.fullmatch(r"tab:[A-Za-z0-9.:-]+", lab) for lab in labels)
    pub = [PublishedTable("glas", e, []).to_latex() for e in ("exp_a", "exp 2")]
    assert [re.search(r"\\label\{([^}]*)\}", p).group(1) for p in pub] == [
        "tab:wslbench-exp-a-published-glas", "tab:wslbench-exp-2-published-glas"]


def test_label_key_keeps_only_label_safe_characters():
    assert label_key("glas_lite0") == "glas-lite0"
    assert label_key("a b/{c}\\d%e#f~g") == "a-b-c-d-e-f-g"
    assert label_key("v1.2-x") == "v1.2-x"


def _table(ncols: int, name: str = "e") -> Table:
    return Table(2, "Caption.", ["Row"], [("GlaS", [f"c{k}" for k in range(ncols)])], [[aggregate([1.0])] * ncols],
                 "Experiment e.", name)


def test_a_wide_table_is_shrunk_to_the_line_width_and_a_narrow_one_is_not():
    narrow, wide = _table(RESIZE_ABOVE).to_latex(), _table(RESIZE_ABOVE + 1).to_latex()
    assert r"\resizebox" not in narrow
    assert wide.count(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%") == 1
    lines = wide.splitlines()
    assert lines[lines.index(r"\end{tabular}") + 1] == "}" and lines[-1] == r"\end{table}"
    assert lines.index(r"\begin{tabular}{l" + "c" * (RESIZE_ABOVE + 1) + "}") == 1 + next(
        i for i, ln in enumerate(lines) if ln.startswith(r"\resizebox"))
    assert wide.count("{") == wide.count("}") and "resize" not in wide.split(r"\caption{")[1].split("}\n")[0]


PREAMBLE = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
#: every command the tables may write: the kernel's, booktabs' and graphicx's
KNOWN = {"begin", "end", "centering", "small", "scriptsize", "caption", "label", "resizebox", "ifdim", "width",
         "linewidth", "else", "fi", "toprule", "midrule", "bottomrule", "cmidrule", "multicolumn", "textbf",
         "textless", "textgreater", "textbackslash", "textasciitilde", "textasciicircum", "dag", "pm", "uparrow",
         "downarrow", "geq", "leq", "tau"}


def test_a_document_of_two_experiments_compiles(tmp_path):
    """With pdflatex: the document compiles with no multiply defined label. Without: its text uses
    only known commands, is ASCII (nothing left to the input encoding), and has unique labels."""
    fabricate(tmp_path / "runs" / "exp_a")
    fabricate(tmp_path / "runs" / "exp_b")
    CliRunner().invoke(main, ["tables", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "t")])
    body = "\n".join(f.read_text() for f in sorted((tmp_path / "t").rglob("table*.tex")))
    assert r"\resizebox" in body and r"u \textgreater{} 0" in body  # the wide Table 2 and the erasing rows
    doc = tmp_path / "doc.tex"
    doc.write_text(PREAMBLE + body + "\\end{document}\n")
    if shutil.which("pdflatex"):
        res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, check=False)
        log = (tmp_path / "doc.log").read_text(errors="replace")
        assert res.returncode == 0, log[-3000:]
        assert "multiply defined" not in log and "Missing character" not in log
    else:
        text = doc.read_text()
        assert text.isascii()
        assert set(re.findall(r"\\([A-Za-z]+)", text)) <= KNOWN | {"documentclass", "usepackage", "document"}
        labels = re.findall(r"\\label\{([^}]*)\}", text)
        assert len(labels) == text.count(r"\begin{table}") == len(set(labels)) > 0
