"""The answer first: a few generated lines per experiment that say who wins, by how much and how
sure (the tied-best sets of the tables, wslbench.verdicts), where min-max stands, and what changed
against another experiment. ``wslbench tables`` writes them as ``<out>/<experiment>/verdict.md``,
and ``--sync-docs FILE`` copies generated text into a document's marker blocks:

- ``<!-- verdict-<exp>:begin -->`` … ``<!-- verdict-<exp>:end -->``: the experiment's verdict;
- ``<!-- verdict-<exp>-vs-<base>:begin/end -->``: the verdict with a line of changes against ``base``;
- ``<!-- table2-<exp>:begin/end -->``: its Table 2 (Markdown).
"""
from __future__ import annotations

import re
from pathlib import Path

from wslbench.errors import DataError
from wslbench.rows import row_info

#: the columns a verdict reports: (table number, column title, what it is in words)
COLUMNS = ((2, "F1- (%)", "F1- (background Dice)"), (2, "F1+ (%)", "F1+ (foreground Dice)"),
           (2, "Mean Dice (%)", "mean Dice of F1+ and F1-"), (7, "PxAP (%)", "PxAP (interval over seeds only)"))
#: at most this many tied rows are named; the rest are counted
NAMED = 6


def _columns(table, title: str) -> list[tuple[str, int]]:
    """(group, column index) of ``title`` in the table's paper-protocol groups."""
    out, k = [], 0
    for group, cols in table.groups:
        for c in cols:
            if c == title and ("[" not in group or "[paper]" in group):
                out.append((group.replace(" [paper]", ""), k))
            k += 1
    return out


def _value(cell) -> str:
    ci = f" [{cell.interval[0]:.1f}, {cell.interval[1]:.1f}]" if cell.interval else ""
    return f"{cell.mean:.2f}{ci}"


def _tied(table, j: int) -> str:
    rows = sorted(((c.mean, name, c) for name, row in zip(table.rows, table.cells) if (c := row[j]).bold),
                  key=lambda t: -t[0])
    named = ", ".join(f"{name} {_value(c)}" for _, name, c in rows[:NAMED])
    more = f", and {len(rows) - NAMED} more" if len(rows) > NAMED else ""
    return f"{named}{more} ({len(rows)} tied)"


def verdict(tables: list, variants: list[str], experiment: str, base: tuple[str, list] | None = None) -> str:
    """The verdict lines of one experiment from its built tables (wslbench.tables.build_tables);
    ``variants``: the rows of Table 2 in order (their registry keys); ``base``: (name, tables)
    of an experiment to compare with."""
    by_number = {t.number: t for t in tables}
    t2 = by_number.get(2)
    if t2 is None:
        raise DataError(f"experiment {experiment} has no Table 2: nothing to summarise")
    seeds = max((c.n for row in t2.cells for c in row), default=0)
    lines = [f"**{experiment}** ({t2.experiment.removeprefix(f'Experiment {experiment}: ').rstrip('.')}; "
             f"up to {seeds} seeds). Best, with every row a paired bootstrap cannot tell from it (5% level), "
             "mean [95% interval]:"]
    for number, title, words in COLUMNS:
        table = by_number.get(number)
        for group, j in _columns(table, title) if table else []:
            lines.append(f"- {words}, {group}: {_tied(table, j)}")
    for v in variants:
        info = row_info(v)
        if info.family == "reference" and not info.classifies and info.contender is False:
            i = t2.rows.index(info.name)
            parts = [f"{t2.groups[0][1][k]} {_value(c)}" for k, c in enumerate(t2.cells[i][:3]) if c.n]
            if parts:
                lines.append(f"- reference {info.name}: " + ", ".join(parts))
    for v in variants:
        info = row_info(v)
        if info.family != "ours" or info.name not in t2.rows:
            continue
        i = t2.rows.index(info.name)
        for group, j in _columns(t2, "Mean Dice (%)")[:1]:
            c = t2.cells[i][j]
            rivals = [row[j].mean for name, row in zip(t2.rows, t2.cells)
                      if row[j].n and not row[j].short and _contender(name, variants)]
            rank = 1 + sum(m > c.mean for m in rivals)
            f1n = t2.cells[i][_columns(t2, "F1- (%)")[0][1]]
            lines.append(f"- {info.name}: mean Dice {_value(c)} ({c.n} seeds), rank {rank} of {len(rivals)} contenders"
                         f"{', tied with the best' if c.bold else ', below the tied-best set'}; F1- {_value(f1n)}")
    if base:
        lines.append(_changes(t2, variants, base))
    return "\n".join(lines) + "\n"


def _contender(name: str, variants: list[str]) -> bool:
    return any(row_info(v).name == name and row_info(v).contender for v in variants)


def _changes(t2, variants, base) -> str:
    """One line: mean Dice of each row in both experiments, this one minus the base, largest first."""
    name, base_tables = base
    b2 = next(t for t in base_tables if t.number == 2)
    cols, bcols = _columns(t2, "Mean Dice (%)"), _columns(b2, "Mean Dice (%)")
    if not cols or not bcols:
        return f"- against {name}: no common Mean Dice column"
    j, bj = cols[0][1], bcols[0][1]
    deltas = []
    for row_name, row in zip(t2.rows, t2.cells):
        if row_name in b2.rows and row[j].n and (other := b2.cells[b2.rows.index(row_name)][bj]).n:
            deltas.append((row[j].mean - other.mean, row_name, row[j].n))
    deltas.sort(key=lambda t: -t[0])
    text = ", ".join(f"{n} {d:+.1f} ({k})" for d, n, k in deltas)
    return f"- mean Dice, this minus {name} (seeds here): {text}"


def experiment_verdict(found, experiment: str, base: str | None = None) -> str:
    """The verdict of ``experiment`` among the discovered runs (wslbench.runs.Discovery), with a
    line of changes against experiment ``base`` when named."""
    from wslbench.tables import build_experiment

    tables, variants = build_experiment(found, experiment)
    return verdict(tables, variants, experiment, (base, build_experiment(found, base)[0]) if base else None)


BLOCK = re.compile(r"<!-- (verdict|table2)-(.+?):begin -->\n.*?<!-- \1-\2:end -->", re.S)


def sync_docs(path: str | Path, tables_dir: str | Path, found=None) -> list[str]:
    """Replace every generated block of the document at ``path``: a ``table2-<exp>`` block with
    ``<tables_dir>/<exp>/table2.md``, a ``verdict-<exp>`` block with ``verdict.md`` there, and a
    ``verdict-<exp>-vs-<base>`` block with the verdict built from the runs ``found``. Returns the
    markers replaced; a block without its generated text is an error that names it."""
    from wslbench.io import atomic_write_text

    path, tables_dir = Path(path), Path(tables_dir)
    doc = path.read_text()
    done = []

    def fill(m):
        kind, key = m.group(1), m.group(2)
        marker = f"{kind}-{key}"
        exp, _, base = key.partition("-vs-")
        if base:
            if found is None:
                raise DataError(f"{path}: block {marker} compares two experiments: it needs the runs (--runs)")
            body = experiment_verdict(found, exp, base)
        else:
            f = tables_dir / exp / ("table2.md" if kind == "table2" else "verdict.md")
            if not f.is_file():
                raise DataError(f"{path}: block {marker} has no generated text ({f} is missing); run `wslbench tables` first")
            body = f.read_text()
        done.append(marker)
        return f"<!-- {marker}:begin -->\n{body.strip()}\n<!-- {marker}:end -->"

    new = BLOCK.sub(fill, doc)
    if new != doc:
        atomic_write_text(path, new)
    return done
