"""Exports of a turns DataFrame: CSV, Parquet, JSONL, SRT, WebVTT and Markdown.

Any turns frame works: ``session.df``, ``load_session(folder)``, one with ``translation_<lang>``
columns, one read back from these files. The core is pure (``csv_text``, ``jsonl_text``,
``subtitle_cues``, ``to_srt``, ``to_vtt``, ``to_markdown`` take a frame and return text); the file
writers are thin wrappers around it.

``export(df, "talk.srt")``            the format chosen by the suffix
``export_session(folder)``            every format, written next to the session's own files
``read_parquet(path)``                a Parquet export back, ``words`` as lists (as ``to_frame`` makes them)

CSV cells are guarded against formula injection: a transcript is text someone *said*, and "equals
hyperlink ..." must never become a live formula when the file is opened in a spreadsheet.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clock import clock
from .errors import ConfigurationError
from .language.translation import COLUMN_PREFIX, column_name
from .session import load_session
from .store import AUDIO_FILE, META_FILE, TRANSLATIONS_FILE, TURNS_FILE

WIDTH = 42  # characters per subtitle line: the common broadcast / Netflix limit
LINES = 2  # lines per subtitle cue
MIN_DURATION = 0.5  # seconds: shorter cues flash by unread, zero-length ones are dropped by players

FORMATS = ("csv", "parquet", "jsonl", "srt", "vtt", "md")
SUBTITLE_FORMATS = ("srt", "vtt")

# Files that are the session's own record: an export must never overwrite them.
_SESSION_FILES = frozenset({TURNS_FILE, AUDIO_FILE, META_FILE, TRANSLATIONS_FILE})

# The fields of `events.Word`, with the Arrow types they are stored as in Parquet. An explicit type
# (rather than inference) keeps files of different sessions identical in schema even when one has
# no words at all or no speakers (inference would give ``list<null>`` or a ``null`` field).
_WORD_FIELDS = (("text", "string"), ("start_ms", "int64"), ("end_ms", "int64"), ("confidence", "float64"),
                ("is_final", "bool_"), ("speaker", "string"))
_WORD_DEFAULTS: dict[str, Any] = {"text": "", "start_ms": 0, "end_ms": 0, "confidence": 1.0, "is_final": True,
                                  "speaker": None}


# ---------------------------------------------------------------------------------------------
# Shared helpers: values out of a frame


def _check_frame(df: Any) -> None:
    if not (hasattr(df, "columns") and hasattr(df, "to_dict")):
        raise ConfigurationError(f"expected a turns DataFrame (session.df or load_session(folder)), got {type(df).__name__}")
    if "text" not in df.columns:
        raise ConfigurationError("a turns DataFrame needs a 'text' column to export; this one has: "
                                 + ", ".join(map(str, df.columns)))


def _missing(value: Any) -> bool:
    """True for None, NaN and pd.NA; False for lists and arrays (which ``pd.isna`` would map)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, bytes, list, tuple, dict)) or hasattr(value, "__len__"):
        return False
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """A JSON-able Python value: NA -> None, numpy scalars and arrays -> Python ones."""
    if _missing(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()  # numpy scalar
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _words_list(value: Any) -> list[dict[str, Any]]:
    """A ``words`` cell in its canonical form, whatever produced it: lists of dicts (``to_frame``),
    arrays of dicts (``pd.read_parquet``), a JSON string (a CSV read back), or missing."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if _missing(value):
        return []
    words = []
    for word in _plain(value):
        word = dict(word)
        out = {name: word.get(name, _WORD_DEFAULTS[name]) for name, _ in _WORD_FIELDS}
        out["start_ms"], out["end_ms"] = int(out["start_ms"]), int(out["end_ms"])
        out["confidence"] = None if out["confidence"] is None else float(out["confidence"])
        words.append(out)
    return words


def _rows(df: Any) -> list[dict[str, Any]]:
    return [{k: (None if _missing(v) else v) for k, v in row.items()} for row in df.to_dict("records")]


def _translation_column(df: Any, language: str) -> str:
    """The frame's column for ``language`` (a code or a name), or a clear error naming those it has."""
    column = column_name(language)
    if column not in df.columns:
        have = [c[len(COLUMN_PREFIX):] for c in df.columns if str(c).startswith(COLUMN_PREFIX)]
        raise ConfigurationError(
            f"no {column!r} column in this frame: translate it first (lsk.translate(df, to={language!r}))"
            + (f"; it has translations into: {', '.join(have)}" if have else "; it has no translations")
        )
    return column


def translation_languages(df: Any) -> list[str]:
    """The languages the frame has ``translation_<lang>`` columns for, as codes (``["de", "es"]``)."""
    return [str(c)[len(COLUMN_PREFIX):].replace("_", "-") for c in df.columns if str(c).startswith(COLUMN_PREFIX)]


# ---------------------------------------------------------------------------------------------
# CSV


_FORMULA_PREFIXES = ("=", "+", "-", "@")


def guard_cell(value: str) -> str:
    """``value`` made inert for spreadsheets (OWASP CSV injection): a cell starting with ``=``,
    ``+``, ``-``, ``@`` (also after leading whitespace, which Excel and LibreOffice skip), a tab or
    a carriage return gets a leading ``'``, which spreadsheets show as text and never evaluate."""
    if value[:1] in ("\t", "\r") or value.lstrip().startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_cell(value: Any, *, is_words: bool) -> Any:
    if is_words:
        return json.dumps(_words_list(value), ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, str):
        return guard_cell(value)
    if isinstance(value, (list, tuple, dict)) or getattr(value, "ndim", 0) > 0:  # e.g. a list in a user column
        return guard_cell(json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":")))
    return value


def csv_text(df: Any, *, words: bool = True) -> str:
    """The frame as CSV text, every text cell guarded by `guard_cell`; numbers are written as they
    are (a negative number stays a number: only strings can carry a formula). ``words`` is compact
    JSON, or left out with ``words=False``."""
    import pandas as pd

    _check_frame(df)
    frame = df.drop(columns=["words"]) if not words and "words" in df.columns else df.copy()
    for name in frame.columns:
        dtype = frame[name].dtype
        textual = pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype) or pd.api.types.is_string_dtype(dtype)
        if name == "words" or textual:
            cells = [_csv_cell(v, is_words=name == "words") for v in frame[name].tolist()]
            frame[name] = pd.Series(cells, index=frame.index, dtype=object)
    frame.columns = [guard_cell(str(c)) for c in frame.columns]  # headers are cells too
    # CRLF as RFC 4180 says; it also makes the csv writer quote cells holding a lone "\r", which with
    # "\n" line ends it would write bare (and a reader would split the row there)
    return str(frame.to_csv(index=False, lineterminator="\r\n"))


def to_csv(df: Any, path: str | Path, *, excel: bool = False, words: bool = True) -> Path:
    """Write `csv_text` as UTF-8; ``excel=True`` adds a byte-order mark so Excel reads it as UTF-8
    (without one it guesses the legacy code page and garbles accents)."""
    text = csv_text(df, words=words)
    return _write(path, ("\ufeff" if excel else "") + text)


# ---------------------------------------------------------------------------------------------
# Parquet


def _words_type() -> Any:
    import pyarrow as pa

    return pa.list_(pa.struct([pa.field(name, getattr(pa, kind)()) for name, kind in _WORD_FIELDS]))


def to_parquet(df: Any, path: str | Path) -> Path:
    """Write the frame as Parquet. ``words`` is a list of structs (typed and queryable, not a JSON
    string); string columns keep pandas' nullable ``string`` dtype and the index is kept, so
    ``pd.read_parquet(path)`` gives the same frame (``words`` as arrays: see `read_parquet`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check_frame(df)
    path = _target(path)
    if "words" not in df.columns:
        pq.write_table(pa.Table.from_pandas(df), path)
        return path
    # from_pandas writes the metadata that restores dtypes and the index on read; the words column is
    # added afterwards, in its place, with its explicit type (columns are read back in file order)
    table = pa.Table.from_pandas(df.drop(columns=["words"]))
    words = pa.array([_words_list(v) for v in df["words"].tolist()], type=_words_type())
    table = table.add_column(list(df.columns).index("words"), "words", words)
    pq.write_table(table, path)
    return path


def read_parquet(path: str | Path) -> Any:
    """A Parquet export read back, ``words`` as lists of dicts like ``Transcript.to_frame`` makes
    them (``pd.read_parquet`` gives numpy arrays of dicts there: equal, but not lists)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    if "words" in frame.columns:
        frame["words"] = pd.Series([_words_list(v) for v in frame["words"].tolist()], index=frame.index, dtype=object)
    return frame


# ---------------------------------------------------------------------------------------------
# JSONL


def jsonl_text(df: Any) -> str:
    """One JSON object per turn and line, UTF-8 as is (``ensure_ascii=False``); missing values are
    ``null`` (never ``NaN``, which is not JSON)."""
    _check_frame(df)
    lines = []
    for row in _rows(df):
        data = {str(k): (_words_list(v) if k == "words" else _plain(v)) for k, v in row.items()}
        lines.append(json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n")
    return "".join(lines)


def to_jsonl(df: Any, path: str | Path) -> Path:
    """Write `jsonl_text`."""
    return _write(path, jsonl_text(df))


# ---------------------------------------------------------------------------------------------
# Subtitles


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle: times in milliseconds, at most ``LINES`` lines where the words allow it."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cues:
    """The cues of a frame, and how many turns were left out (no times, or no translation)."""

    cues: tuple[Cue, ...]
    skipped_untimed: int = 0
    skipped_untranslated: int = 0


def _greedy(tokens: Sequence[str], width: int) -> list[list[str]]:
    """Greedy word wrap; a word longer than ``width`` gets a line of its own (never broken)."""
    lines: list[list[str]] = []
    length = 0
    for token in tokens:
        if lines and length + 1 + len(token) <= width:
            lines[-1].append(token)
            length += 1 + len(token)
        else:
            lines.append([token])
            length = len(token)
    return lines


def _balanced(tokens: Sequence[str], count: int, width: int) -> list[list[str]]:
    """At most ``count`` lines, as even as possible: the narrowest greedy wrap that still fits in
    ``count`` lines (two lines of 20 read better than one of 40 and one of 2)."""
    if not tokens:
        return []
    lo = max(len(t) for t in tokens)
    hi = max(lo, width, len(" ".join(tokens)))
    if len(_greedy(tokens, hi)) > count:
        return _greedy(tokens, width)
    while lo < hi:  # the greedy line count only falls as the width grows: binary search
        mid = (lo + hi) // 2
        if len(_greedy(tokens, mid)) <= count:
            hi = mid
        else:
            lo = mid + 1
    return _greedy(tokens, lo)


def _layout(tokens: Sequence[str], width: int, lines: int) -> list[list[list[str]]]:
    """Cues (each a list of lines of tokens) for one text: as few cues as possible, then the lines
    balanced so that every cue has ``lines`` lines of about the same length."""
    needed = len(_greedy(tokens, width))
    if needed <= lines:
        return [_balanced(tokens, needed, width)]
    cues = math.ceil(needed / lines)
    laid = _balanced(tokens, cues * lines, width)
    return [laid[i:i + lines] for i in range(0, len(laid), lines)]


def _chunk_times(start: int, end: int, groups: Sequence[Sequence[int]], tokens: Sequence[str],
                 words: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """Times for consecutive chunks of one turn. ``groups`` hold indexes into ``tokens`` (the turn's
    text). With one word timing per token, a chunk runs from its first word to its last; otherwise
    the turn's time is shared out by characters (speech rate is roughly constant)."""
    if len(groups) == 1:
        return [(start, end)]
    if words and len(words) == len(tokens) and all(groups):
        base = min(int(w["start_ms"]) for w in words)  # word times are on the server session's clock
        return [(start + int(words[g[0]]["start_ms"]) - base, start + int(words[g[-1]]["end_ms"]) - base) for g in groups]
    sizes = [sum(len(tokens[i]) + 1 for i in g) or 1 for g in groups]
    total, done, out = sum(sizes), 0, []
    for size in sizes:
        out.append((start + (end - start) * done // total, start + (end - start) * (done + size) // total))
        done += size
    return out


def _no_overlap(cues: list[Cue], min_ms: int) -> list[Cue]:
    """Cues in time order, each at least ``min_ms`` long and ending no later than the next starts.
    A cue that would overlap the next is cut at the next one's start, unless that leaves it too
    short: then the next one starts later instead."""
    out: list[Cue] = []
    for cue in sorted(cues, key=lambda c: (c.start_ms, c.end_ms)):
        start, end = cue.start_ms, max(cue.end_ms, cue.start_ms + min_ms)
        if out and out[-1].end_ms > start:
            prev = out[-1]
            cut = max(start, prev.start_ms + min_ms)
            out[-1] = Cue(prev.start_ms, cut, prev.lines)
            start = max(start, cut)
            end = max(end, start + min_ms)
        out.append(Cue(start, end, cue.lines))
    return out


def _labelled(tokens: list[str], row: Mapping[str, Any], speakers: bool) -> list[str]:
    """The turn's words with ``"A:"`` glued to the first one when it has a speaker: the label then
    counts towards the line width but is never left alone on a line, and word ``i`` of the layout
    stays word ``i`` of the text (for the word timings)."""
    speaker = str(row.get("speaker") or "").strip()
    if not (speakers and speaker and tokens):
        return tokens
    return [f"{speaker}: {tokens[0]}", *tokens[1:]]


def subtitle_cues(df: Any, *, translation: str | None = None, bilingual: str | None = None, width: int = WIDTH,
                  lines: int = LINES, min_duration: float = MIN_DURATION, speakers: bool = True) -> Cues:
    """The subtitle cues of a turns frame (pure; `to_srt` and `to_vtt` render them).

    ``translation="es"``: the cues show the Spanish translation instead of the original (one file
    per language). ``bilingual="es"``: each cue shows a line of the original and, under it, a line of
    the translation. ``speakers``: a turn with a speaker starts with ``"A: "``. Turns without
    start/end times cannot be placed and are counted in ``skipped_untimed``; with ``translation``,
    turns not translated (yet) are counted in ``skipped_untranslated``.
    """
    _check_frame(df)
    if translation and bilingual:
        raise ConfigurationError("choose translation= (a file in that language) or bilingual= (two lines), not both")
    text_column = _translation_column(df, translation) if translation else "text"
    second = _translation_column(df, bilingual) if bilingual else None
    min_ms = max(1, round(min_duration * 1000))
    cues: list[Cue] = []
    untimed = untranslated = 0
    for row in _rows(df):
        text = row.get(text_column)
        if text is None and translation:
            untranslated += 1
            continue
        tokens = str(text or "").split()
        if not tokens:
            continue
        if row.get("start") is None or row.get("end") is None:
            untimed += 1
            continue
        start, end = round(float(row["start"]) * 1000), round(float(row["end"]) * 1000)
        labelled = _labelled(tokens, row, speakers)
        words = _words_list(row.get("words")) if not translation else []
        if second is None:
            laid = _layout(labelled, width, lines)
            groups = _token_groups(laid)
            times = _chunk_times(start, end, groups, tokens, words)
            cues += [Cue(s, e, tuple(" ".join(line) for line in cue)) for (s, e), cue in zip(times, laid, strict=True)]
            continue
        # bilingual: the original and its translation split into the same number of parts, one line each
        other = str(row.get(second) or "").split()
        count = max(len(_greedy(labelled, width)), len(_greedy(other, width)) if other else 0)
        top, bottom = _balanced(labelled, count, width), _balanced(other, count, width)
        parts = max(len(top), len(bottom))
        top += [[]] * (parts - len(top))
        bottom += [[]] * (parts - len(bottom))
        # timed by the original's lines (its words are the ones spoken)
        times = _chunk_times(start, end, _token_groups([[line] for line in top]), tokens, words)
        for (s, e), upper, lower in zip(times, top, bottom, strict=True):
            cues.append(Cue(s, e, tuple(" ".join(line) for line in (upper, lower) if line)))
    return Cues(tuple(_no_overlap(cues, min_ms)), untimed, untranslated)


def _token_groups(laid: Sequence[Sequence[Sequence[str]]]) -> list[list[int]]:
    """For each cue (a list of lines of words), the indexes of its words in the turn."""
    groups, position = [], 0
    for cue in laid:
        count = sum(len(line) for line in cue)
        groups.append(list(range(position, position + count)))
        position += count
    return groups


def _warn_skipped(result: Cues, total: int) -> None:
    # a warning, not an error: a partial subtitle file is still useful, but a silent gap is not
    if result.skipped_untimed:
        warnings.warn(f"{result.skipped_untimed} of {total} turns have no start/end time and were left out of "
                      "the subtitles", stacklevel=3)
    if result.skipped_untranslated:
        warnings.warn(f"{result.skipped_untranslated} of {total} turns have no translation and were left out of "
                      "the subtitles", stacklevel=3)


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(max(0, ms), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def srt_timestamp(seconds: float) -> str:
    """``3723.5`` -> ``"01:02:03,500"`` (SubRip uses a comma)."""
    return _timestamp(round(seconds * 1000), ",")


def vtt_timestamp(seconds: float) -> str:
    """``3723.5`` -> ``"01:02:03.500"`` (WebVTT uses a dot)."""
    return _timestamp(round(seconds * 1000), ".")


def escape_vtt(text: str) -> str:
    """``&``, ``<`` and ``>`` as entities: in WebVTT they start tags and entities (and ``-->`` would
    end the timing line)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_srt(df: Any, path: str | Path | None = None, **options: Any) -> str:
    """SubRip subtitles of the frame: numbered cues, ``HH:MM:SS,mmm`` times, a blank line between
    cues. Options as in `subtitle_cues`; with ``path`` the text is written there too (UTF-8)."""
    result = subtitle_cues(df, **options)
    _warn_skipped(result, len(df))
    blocks = [f"{n}\n{_timestamp(c.start_ms, ',')} --> {_timestamp(c.end_ms, ',')}\n" + "\n".join(c.lines) + "\n"
              for n, c in enumerate(result.cues, 1)]
    text = "\n".join(blocks)
    if path is not None:
        _write(path, text)
    return text


def to_vtt(df: Any, path: str | Path | None = None, **options: Any) -> str:
    """WebVTT subtitles of the frame: the ``WEBVTT`` header, ``HH:MM:SS.mmm`` times, text escaped.
    Options as in `subtitle_cues`; with ``path`` the text is written there too (UTF-8)."""
    result = subtitle_cues(df, **options)
    _warn_skipped(result, len(df))
    blocks = [f"{_timestamp(c.start_ms, '.')} --> {_timestamp(c.end_ms, '.')}\n"
              + "\n".join(escape_vtt(line) for line in c.lines) + "\n" for c in result.cues]
    text = "\n".join(["WEBVTT\n", *blocks])
    if path is not None:
        _write(path, text)
    return text


# ---------------------------------------------------------------------------------------------
# Markdown


_MD_ALWAYS = re.compile(r"([\\`*_\[\]<>#|~$&])")  # $: Jupyter renders $...$ as LaTeX
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+[.)])")  # lists, setext underlines, ordered lists


def escape_markdown(text: str) -> str:
    """``text`` shown literally in Markdown (CommonMark, GitHub, Jupyter): emphasis, code, links,
    HTML, headings, tables, math and list markers are backslash-escaped; runs of whitespace (line
    breaks included) become one space, since a turn is one paragraph."""
    text = " ".join(text.split())
    text = _MD_ALWAYS.sub(r"\\\1", text)
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2) if len(m.group(2)) == 1
                              else m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def to_markdown(df: Any, path: str | Path | None = None, *, title: str | None = "Transcript",
                translations: bool | Sequence[str] = True) -> str:
    """A readable transcript: per turn its start time and speaker in bold, the text, and each
    translation in italics under it (``translations``: all of the frame's, some languages, or
    none). Everything from the transcript is escaped. With ``path`` it is written there too."""
    _check_frame(df)
    if translations is True:
        columns = [(lang, column_name(lang)) for lang in translation_languages(df)]
    elif translations:
        languages = [translations] if isinstance(translations, str) else list(translations)
        columns = [(lang, _translation_column(df, lang)) for lang in languages]
    else:
        columns = []
    parts = [f"# {escape_markdown(title)}\n"] if title else []
    for row in _rows(df):
        label = [clock(float(row["start"]))] if row.get("start") is not None else []
        if row.get("speaker") is not None and str(row["speaker"]).strip():
            label.append(escape_markdown(str(row["speaker"])))
        lines = [f"**{' · '.join(label)}**"] if label else []
        lines.append(escape_markdown(str(row.get("text") or "")) or "*(no text)*")
        for language, column in columns:
            if row.get(column) is not None and str(row[column]).strip():
                lines.append(f"*{escape_markdown(language)}: {escape_markdown(str(row[column]))}*")
        parts.append("  \n".join(lines) + "\n")  # two trailing spaces: a hard line break
    if len(parts) == (1 if title else 0):
        parts.append("*(no turns)*\n")
    text = "\n".join(parts)
    if path is not None:
        _write(path, text)
    return text


# ---------------------------------------------------------------------------------------------
# Files


def _target(path: str | Path) -> Path:
    path = Path(path)
    if path.name in _SESSION_FILES:
        raise ConfigurationError(f"{path.name} is a session's own record; export to another name (e.g. transcript"
                                 f"{path.suffix})")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write(path: str | Path, text: str) -> Path:
    path = _target(path)
    with open(path, "w", encoding="utf-8", newline="") as f:  # newline="": the text's line ends, on every OS
        f.write(text)
    return path


_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".srt": "srt", ".vtt": "vtt", ".md": "md"}


def _format_of(name: str) -> str:
    key = name.lower().lstrip(".")
    if key not in FORMATS:
        raise ConfigurationError(f"unknown export format {name!r}: use one of {', '.join('.' + f for f in FORMATS)}")
    return key


def export(df: Any, path: str | Path, **options: Any) -> Path:
    """Write the frame in the format its suffix names (``.csv``, ``.parquet``, ``.jsonl``, ``.srt``,
    ``.vtt``, ``.md``); ``options`` go to that writer (``excel=True``, ``translation="es"``, ...)."""
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ConfigurationError(f"cannot tell the export format of {path.name!r}: use a suffix among "
                                 + ", ".join(_SUFFIXES))
    return _write_format(df, path, _SUFFIXES[path.suffix.lower()], options)


def _write_format(df: Any, path: Path, fmt: str, options: Mapping[str, Any]) -> Path:
    if fmt == "csv":
        return to_csv(df, path, **options)
    if fmt == "parquet":
        return to_parquet(df, path, **options)
    if fmt == "jsonl":
        return to_jsonl(df, path, **options)
    render = {"srt": to_srt, "vtt": to_vtt, "md": to_markdown}[fmt]
    render(df, path, **options)
    return path


def export_session(folder: str | Path, formats: Iterable[str] = FORMATS, *, stem: str = "transcript",
                   translations: bool = True, excel: bool = False) -> list[Path]:
    """Export a saved session (``load_session(folder)``) into its own folder: ``transcript.csv``,
    ``transcript.parquet``, ... With ``translations`` and subtitles asked for, each translated
    language also gets its own ``transcript.<lang>.srt`` / ``.vtt``. Returns the paths written."""
    wanted = list(dict.fromkeys(_format_of(f) for f in ([formats] if isinstance(formats, str) else formats)))
    folder = Path(folder)
    df = load_session(folder)
    written = []
    for fmt in wanted:
        options = {"excel": excel} if fmt == "csv" else {}
        written.append(_write_format(df, folder / f"{stem}.{fmt}", fmt, options))
        if translations and fmt in SUBTITLE_FORMATS:
            for language in translation_languages(df):
                written.append(_write_format(df, folder / f"{stem}.{language}.{fmt}", fmt, {"translation": language}))
    return written


__all__ = [
    "FORMATS",
    "Cue",
    "Cues",
    "csv_text",
    "escape_markdown",
    "escape_vtt",
    "export",
    "export_session",
    "guard_cell",
    "jsonl_text",
    "read_parquet",
    "srt_timestamp",
    "subtitle_cues",
    "to_csv",
    "to_jsonl",
    "to_markdown",
    "to_parquet",
    "to_srt",
    "to_vtt",
    "translation_languages",
    "vtt_timestamp",
]
