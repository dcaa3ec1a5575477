"""The report of ``rstsafe demo``: tables that fit, a footnote per failed cell, the totals.

Everything here is computed from the run's records (:class:`~rstsafe._cli.demo.Cell`,
:class:`~rstsafe._cli.demo.FailedRequest`): which request failed, what happened, whether
it may have been sent, what the client decided, which other clients got an answer to
it, and how often the server executed it. Nothing is written per scenario by hand, so a
new behaviour or a new library's columns are explained like the others.

Layout: one column per client, grouped by library (plain, rstsafe, other variants). The
groups are packed into as few tables as fit the width (100 columns by default); a group
that is too wide on its own is split. ``width=None`` puts every column in one table and
the root cause in each cell (``--wide``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from rstsafe._cli._term import Style, visible_width
from rstsafe._cli.demo import Cell, Client, FailedRequest
from rstsafe._core.classify import Delivery

__all__ = ("as_json", "explain", "footnotes", "render_text", "takeaway", "totals")

Results = Mapping[str, Mapping[str, Cell]]

_GAP = 2
_BY_DESIGN = "by design"
_NO_ANSWER = "no answer"
_OTHER = "other"


# -- explanations ---------------------------------------------------------------------------


def _clients_run(row: Mapping[str, Cell]) -> int:
    return sum(cell.unavailable is None for cell in row.values())


def explain(
    failure: FailedRequest,
    client: Client,
    row: Mapping[str, Cell],
    clients: Mapping[str, Client],
) -> tuple[str, str]:
    """``(category, text)``: what happened to a failed request and why that is the outcome.

    The categories are ``"by design"`` (rstsafe did not resend a request that may have
    been sent and is not idempotent), ``"no answer"`` (no client of the row got a
    response to this request: nothing could succeed) and ``"other"``. ``row`` is every
    client's cell for the same scenario, ``clients`` the registry its titles come from.
    """
    happened = failure.kind.value + (" on a reused connection" if failure.reused else "")
    sent = "nothing was sent" if failure.delivery is Delivery.NOT_SENT else "may have been sent"
    answered_by = [t for t, cell in row.items() if failure.index in cell.answered]
    ran_twice = {
        title: count
        for title, cell in row.items()
        for request, count in cell.executed_twice
        if request == failure.request
    }
    if (
        client.is_rstsafe
        and failure.delivery is Delivery.MAYBE_SENT
        and not failure.idempotent
        and failure.attempts == 1
    ):
        text = f"{happened}, {sent}: not resent, by design: it is not idempotent"
        others = [f"{title} ran it {count} times" for title, count in ran_twice.items()]
        others += [
            f"{title} got an answer by resending it, not knowing whether the server had run it"
            for title in answered_by
            if title not in ran_twice and title in clients and clients[title].resends_unsafe
        ]
        return _BY_DESIGN, text + "".join(f"; {other}" for other in others)
    if failure.attempts > 1:
        tried = f"resent {failure.attempts - 1} times, every attempt failed"
    elif client.is_rstsafe and failure.reason:
        tried = failure.reason
    else:
        tried = client.on_failure
    if not answered_by:
        return _NO_ANSWER, f"{happened}, {sent}: {tried}; no client got an answer"
    count, run = len(answered_by), _clients_run(row)
    who = " and ".join(answered_by) if count <= 2 else f"{count} of the {run} clients"
    return _OTHER, f"{happened}, {sent}: {tried}; {who} got an answer"


def _request_list(requests: Sequence[FailedRequest], cell: Cell) -> str:
    if len(requests) == cell.requests == 2:
        return "both requests"
    if len(requests) == cell.requests > 2:
        return f"all {cell.requests} requests"
    parts: list[str] = []
    last_method = None
    for request in requests:
        parts.append(request.path if request.method == last_method else request.request)
        last_method = request.method
    return ", ".join(parts)


def footnotes(
    cell: Cell, client: Client, row: Mapping[str, Cell], clients: Mapping[str, Client]
) -> list[str]:
    """The explanation of a cell, one part per distinct outcome (empty when nothing failed)."""
    groups: dict[str, list[FailedRequest]] = {}
    for failure in cell.failures:
        groups.setdefault(explain(failure, client, row, clients)[1], []).append(failure)
    parts = [f"{_request_list(requests, cell)}: {text}" for text, requests in groups.items()]
    if cell.executed_twice:
        runs = ", ".join(f"{request} {count} times" for request, count in cell.executed_twice)
        parts.append(f"the server ran {runs}: resent though it may have run (C10)")
    return parts


def _wrap(text: str, width: int | None, indent: str) -> list[str]:
    if width is None:
        return [text]
    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False)


# -- tables ---------------------------------------------------------------------------------


def _groups(titles: Sequence[str], clients: Mapping[str, Client]) -> list[list[str]]:
    """Columns grouped by library, in the order the libraries first appear."""
    groups: dict[str, list[str]] = {}
    for title in titles:
        groups.setdefault(clients[title].library, []).append(title)
    return list(groups.values())


def _pack(
    groups: list[list[str]], widths: Mapping[str, int], first: int, limit: int | None
) -> list[list[str]]:
    """Pack whole groups into tables of at most ``limit`` columns; split a group too wide."""
    if limit is None:
        return [[title for group in groups for title in group]]
    tables: list[list[str]] = []
    current: list[str] = []

    def width_of(columns: list[str]) -> int:
        return first + sum(_GAP + widths[t] for t in columns)

    for group in groups:
        if current and width_of(current + group) <= limit:
            current += group
            continue
        if current:
            tables.append(current)
            current = []
        for title in group:  # a group wider than the limit is split, column by column
            if current and width_of([*current, title]) > limit:
                tables.append(current)
                current = []
            current.append(title)
    if current:
        tables.append(current)
    return tables


def _paint(cell: Cell, text: str, style: Style) -> str:
    if cell.unavailable is not None:
        return style(text, "dim")
    if cell.duplicates:
        return style(text, "red", "bold")
    if cell.failed:
        return style(text, "red")
    return style(text, "green")


def _table(
    results: Results,
    titles: list[str],
    texts: Mapping[tuple[str, str], str],
    style: Style,
) -> list[str]:
    first = max([len("behaviour"), *(len(name) for name in results)])
    widths = [max([len(t), *(len(texts[(s, t)]) for s in results)]) for t in titles]
    gap = " " * _GAP
    lines = [
        (
            "behaviour".ljust(first)
            + gap
            + gap.join(t.ljust(w) for t, w in zip(titles, widths, strict=True))
        ).rstrip(),
        "-" * first + gap + gap.join("-" * w for w in widths),
    ]
    for scenario, cells in results.items():
        row = [
            _paint(cells[t], texts[(scenario, t)], style) + " " * (w - len(texts[(scenario, t)]))
            for t, w in zip(titles, widths, strict=True)
        ]
        lines.append((scenario.ljust(first) + gap + gap.join(row)).rstrip())
    return lines


def totals(results: Results) -> dict[str, tuple[int, int, int]]:
    """``{client: (failed, duplicate executions, requests)}`` over the whole run."""
    sums: dict[str, tuple[int, int, int]] = {}
    for cells in results.values():
        for title, cell in cells.items():
            failed, duplicated, sent = sums.get(title, (0, 0, 0))
            sums[title] = (failed + cell.failed, duplicated + cell.duplicates, sent + cell.requests)
    return sums


def _totals_table(results: Results, style: Style) -> list[str]:
    sums = totals(results)
    first = max([len("client"), *(len(t) for t in sums)])
    lines = [
        f"{'client'.ljust(first)}  {'failed':>9}  duplicate executions",
        f"{'-' * first}  {'-' * 9}  {'-' * 20}",
    ]
    for title, (failed, duplicated, sent) in sums.items():
        dup = style(f"{duplicated:>20}", "red", "bold") if duplicated else f"{duplicated:>20}"
        lines.append(f"{title.ljust(first)}  {f'{failed}/{sent}':>9}  {dup}")
    return lines


# -- the takeaway ---------------------------------------------------------------------------


def _categories(results: Results, clients: Mapping[str, Client], title: str) -> dict[str, int]:
    counts = {_BY_DESIGN: 0, _NO_ANSWER: 0, _OTHER: 0}
    for row in results.values():
        cell = row.get(title)
        if cell is None:
            continue
        for failure in cell.failures:
            counts[explain(failure, clients[title], row, clients)[0]] += 1
    return counts


def takeaway(results: Results, clients: Mapping[str, Client]) -> list[str]:
    """The lines to remember, computed from this run: one per library, then the verdict."""
    sums = totals(results)
    ran = [
        t for t in sums if all(row[t].unavailable is None for row in results.values() if t in row)
    ]
    lines: list[str] = []
    verdict_ok = True
    seen_rstsafe = False
    for group in _groups(ran, clients):
        safe = [t for t in group if clients[t].is_rstsafe]
        plain = [t for t in group if clients[t].variant == "plain"]
        others = [t for t in group if t not in safe and t not in plain]
        for title in safe:
            seen_rstsafe = True
            failed, duplicated, sent = sums[title]
            counts = _categories(results, clients, title)
            against = "".join(f" ({p}: {sums[p][0]})" for p in plain)
            twice = f"{duplicated} executions ran twice" if duplicated else "none ran twice"
            line = (
                f"{title}: {failed} of {sent} failed{against}, {twice}. Of the {failed}, "
                f"{counts[_BY_DESIGN]} may have run on the server and are not idempotent "
                f"(not resent, by design) and {counts[_NO_ANSWER]} got no answer for any client"
            )
            line += f"; {counts[_OTHER]} other." if counts[_OTHER] else "."
            lines.append(line)
            verdict_ok = verdict_ok and not duplicated and not counts[_OTHER]
        for title in others:
            failed, duplicated, sent = sums[title]
            lines.append(
                f"{title}: {failed} of {sent} failed, but {duplicated} executions of requests "
                "that are not idempotent ran a second time (C10)."
                if duplicated
                else f"{title}: {failed} of {sent} failed, none ran twice."
            )
    if not seen_rstsafe:
        return lines
    if verdict_ok:
        lines.append(
            "Take away: rstsafe ran no request twice, and every request it failed is one no "
            "client got an answer to, or one that may already have run on the server."
        )
    else:
        lines.append(
            "Take away: this run found rstsafe failures another client recovered, or a "
            "request rstsafe ran twice: see the footnotes."
        )
    return lines


# -- the whole report -----------------------------------------------------------------------


def render_text(
    results: Results,
    clients: Mapping[str, Client],
    *,
    width: int | None = 100,
    style: Style | None = None,
) -> str:
    """The text report; every line fits ``width`` columns (None: one wide table)."""
    style = style if style is not None else Style.plain()
    titles = list(next(iter(results.values())).keys()) if results else []
    wide = width is None
    # Footnote numbers are given in reading order: table by table, row by row.
    short = {
        (s, t): (row[t].render() if wide else row[t].summary())
        for s, row in results.items()
        for t in titles
    }
    first = max([len("behaviour"), *(len(name) for name in results)])
    # Column widths with room for a two-digit footnote marker, to pack the tables.
    room = {t: max([len(t), *(len(short[(s, t)]) + 5 for s in results)]) for t in titles}
    tables = _pack(_groups(titles, clients), room, first, width)
    out = [
        "What each client gets from a server that resets connections (rstsafe.testing):",
        "",
    ]
    number = 0
    for columns in tables:
        texts = dict(short)
        notes: list[str] = []
        for scenario, row in results.items():
            for title in columns:
                parts = footnotes(row[title], clients[title], row, clients)
                if not parts:
                    continue
                number += 1
                texts[(scenario, title)] = f"{short[(scenario, title)]} [{number}]"
                lead = f"[{number}] {title}, {scenario}: "
                notes += _wrap(lead + parts[0], width, "    ")
                for part in parts[1:]:
                    notes += _wrap("    " + part, width, "      ")
        out += _table(results, columns, texts, style)
        out.append("")
        out += notes
        out.append("")
    out.append("'N dup': extra executions of a request that is not idempotent (a POST run twice).")
    out.append("")
    out += _totals_table(results, style)
    lines = takeaway(results, clients)
    if lines:
        out.append("")
        for line in lines:
            bold = line.startswith("Take away:")
            for wrapped in _wrap(line, width, ""):
                out.append(style(wrapped, "bold") if bold else wrapped)
    return "\n".join(out) + "\n"


def _failure_json(
    failure: FailedRequest, title: str, row: Mapping[str, Cell], clients: Mapping[str, Client]
) -> dict[str, Any]:
    category, text = explain(failure, clients[title], row, clients)
    return {
        "request": failure.request,
        "error": failure.error,
        "kind": failure.kind.value,
        "delivery": failure.delivery.value,
        "reused": failure.reused,
        "attempts": failure.attempts,
        "idempotent": failure.idempotent,
        "decision": failure.reason,
        "category": category,
        "explanation": text,
    }


def as_json(results: Results, clients: Mapping[str, Client]) -> dict[str, Any]:
    """The whole run: every cell with its failures explained, the totals and the takeaway."""
    return {
        "scenarios": {
            scenario: {
                title: {
                    "requests": cell.requests,
                    "failed": cell.failed,
                    "errors": dict(cell.errors),
                    "statuses": {str(k): v for k, v in cell.statuses.items()},
                    "duplicates": cell.duplicates,
                    "unavailable": cell.unavailable,
                    "failures": [_failure_json(f, title, row, clients) for f in cell.failures],
                    "executed_twice": dict(cell.executed_twice),
                }
                for title, cell in row.items()
            }
            for scenario, row in results.items()
        },
        "totals": {
            title: {"requests": sent, "failed": failed, "duplicate_executions": duplicated}
            for title, (failed, duplicated, sent) in totals(results).items()
        },
        "takeaway": takeaway(results, clients),
    }


def line_widths(text: str) -> list[int]:
    """The terminal width of every line of ``text`` (colour codes excluded)."""
    return [visible_width(line) for line in text.splitlines()]
