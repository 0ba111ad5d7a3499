"""Exports of turns DataFrames: spreadsheet-safe CSV, Parquet and JSONL round trips, SRT/WebVTT
subtitles, Markdown, the suffix dispatcher, a real saved session, and the export notebook."""

from __future__ import annotations

import csv
import io
import json
import re
from itertools import pairwise
from pathlib import Path

import nbformat
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import API_KEY, ROOT
from nbclient import NotebookClient

from live_stt_kernel import Session
from live_stt_kernel.errors import ConfigurationError, SavedSessionError
from live_stt_kernel.events import Word
from live_stt_kernel.export import (
    WIDTH,
    csv_text,
    escape_markdown,
    export,
    export_session,
    guard_cell,
    jsonl_text,
    read_parquet,
    subtitle_cues,
    to_csv,
    to_jsonl,
    to_markdown,
    to_parquet,
    to_srt,
    to_vtt,
)
from live_stt_kernel.language.live import append_translations
from live_stt_kernel.language.translation import Translation
from live_stt_kernel.session import load_session
from live_stt_kernel.transcript import Transcript, TurnRecord, records_from_frame
from live_stt_kernel.v3.replay import even_turns, turns_script

NOTEBOOK = ROOT / "notebooks" / "06_export_and_load.ipynb"
DANGEROUS = ["=1+1", "+41 22 555", "-2+3", "@SUM(A1:A9)", "\tx", "\r=1", "  =HYPERLINK(\"http://e.x\")", " \t@cmd"]
HARMLESS = ["hello", "a = b", "1-2", "", "'already quoted", "ça va: oui"]


def turn(index: int, text: str, start: float | None = None, end: float | None = None, *, speaker: str | None = None,
         words: tuple[Word, ...] = (), latency: float | None = 0.25, session_id: str = "sess-1") -> TurnRecord:
    return TurnRecord(session_id=session_id, turn_order=index, turn_index=index, text=text, words=words, start=start,
                      end=end, confidence=0.9, speaker=speaker, language="en", formatted=True, end_of_turn_latency=latency)


def frame(*records: TurnRecord, es: list[str | None] | None = None) -> pd.DataFrame:
    df = Transcript.from_records(records).to_frame()
    if es is not None:
        df["translation_es"] = pd.Series(es, index=df.index, dtype="string")
    return df


def words_for(text: str, start_ms: int = 5000, step: int = 300, speaker: str | None = None) -> tuple[Word, ...]:
    return tuple(Word(text=w, start_ms=start_ms + i * step, end_ms=start_ms + i * step + 250, confidence=0.8,
                      speaker=speaker) for i, w in enumerate(text.split()))


def parse_srt(text: str) -> list[tuple[int, float, float, list[str]]]:
    """(number, start, end, lines) per cue; asserts the block shape on the way."""
    cues = []
    for block in text.rstrip("\n").split("\n\n"):
        number, timing, *lines = block.split("\n")
        match = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", timing)
        assert match, timing
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        cues.append((int(number), h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, lines))
    return cues


# ---------------------------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("value", DANGEROUS)
def test_guard_cell_prefixes_every_dangerous_start(value):
    assert guard_cell(value) == "'" + value


@pytest.mark.parametrize("value", HARMLESS)
def test_guard_cell_leaves_harmless_text_alone(value):
    assert guard_cell(value) == value


def test_csv_guards_text_cells_and_leaves_numbers_alone(tmp_path):
    records = [turn(i, text, float(i), i + 0.5, latency=-0.25) for i, text in enumerate(DANGEROUS + HARMLESS)]
    records.append(turn(len(records), "hi", 20.0, 21.0, speaker="=cmd|' /C calc'!A0", latency=-0.25))
    df = frame(*records, es=["-menos"] + [None] * (len(records) - 1))
    path = to_csv(df, tmp_path / "t.csv")

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows[: len(DANGEROUS)]] == ["'" + v for v in DANGEROUS]
    assert [r["text"] for r in rows[len(DANGEROUS):-1]] == HARMLESS
    assert rows[-1]["speaker"] == "'=cmd|' /C calc'!A0" and rows[0]["translation_es"] == "'-menos"
    assert {r["end_of_turn_latency"] for r in rows} == {"-0.25"}  # a negative number is not a formula
    assert rows[1]["start"] == "1.0" and rows[0]["session_id"] == "sess-1"

    back = pd.read_csv(path, keep_default_na=False)
    assert back["end_of_turn_latency"].tolist() == [-0.25] * len(rows)
    assert back["start"].tolist() == df["start"].tolist() and back["turn_index"].tolist() == df["turn_index"].tolist()
    assert back["text"].iloc[0] == "'=1+1" and back["text"].iloc[len(DANGEROUS)] == "hello"


def test_csv_words_are_compact_json_or_dropped(tmp_path):
    words = words_for("one two", speaker="A")
    df = frame(turn(0, "one two", 5.0, 5.55, words=words), turn(1, "no words", 6.0, 7.0))
    rows = list(csv.DictReader(io.StringIO(csv_text(df))))
    assert json.loads(rows[0]["words"]) == df["words"].iloc[0] and rows[1]["words"] == "[]"
    assert ", " not in rows[0]["words"] and ": " not in rows[0]["words"]  # compact
    dropped = list(csv.DictReader(io.StringIO(csv_text(df, words=False))))
    assert "words" not in dropped[0] and dropped[0]["text"] == "one two"
    assert to_csv(df, tmp_path / "w.csv", words=False).read_text(encoding="utf-8").splitlines()[0].count("words") == 0


def test_csv_excel_option_writes_a_bom(tmp_path):
    df = frame(turn(0, "Señor, ¿qué tal?", 0.0, 1.0))
    plain = to_csv(df, tmp_path / "plain.csv").read_bytes()
    excel = to_csv(df, tmp_path / "excel.csv", excel=True).read_bytes()
    assert excel.startswith(b"\xef\xbb\xbf") and not plain.startswith(b"\xef\xbb\xbf")
    assert excel[3:] == plain and "Señor, ¿qué tal?".encode() in plain
    assert pd.read_csv(tmp_path / "excel.csv", encoding="utf-8-sig").columns[0] == "session_id"


# ----------------------------------------------------------------------------------- Parquet, JSONL


def rich_frame() -> pd.DataFrame:
    return frame(
        turn(0, "Hello there.", 0.3, 1.2, speaker="A", words=words_for("Hello there.", 300, speaker="A")),
        turn(1, "No words, no times, no speaker.", latency=None),
        turn(2, "Ünïcödé → ok", 3.0, 4.0, words=words_for("Ünïcödé → ok", 3000)),
        es=["Hola.", None, "Unicode → vale"],
    )


def test_parquet_round_trip_gives_the_same_frame(tmp_path):
    df = rich_frame()
    path = to_parquet(df, tmp_path / "t.parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    assert back["text"].dtype == df["text"].dtype and isinstance(back["speaker"].dtype, pd.StringDtype)
    assert back["speaker"].isna().tolist() == [False, True, True]
    schema = pq.read_schema(path)
    assert pa.types.is_list(schema.field("words").type) and pa.types.is_struct(schema.field("words").type.value_type)

    lists = read_parquet(path)  # words as lists, so the frame works everywhere a live one does
    pd.testing.assert_frame_equal(lists, df)
    assert isinstance(lists["words"].iloc[0], list) and records_from_frame(lists) == records_from_frame(df)


def test_parquet_keeps_the_index_and_an_empty_frame(tmp_path):
    df = rich_frame().iloc[1:]
    pd.testing.assert_frame_equal(pd.read_parquet(to_parquet(df, tmp_path / "a.parquet")), df)
    empty = frame()
    pd.testing.assert_frame_equal(pd.read_parquet(to_parquet(empty, tmp_path / "b.parquet")), empty)


def test_jsonl_is_one_object_per_turn(tmp_path):
    df = rich_frame()
    path = to_jsonl(df, tmp_path / "t.jsonl")
    raw = path.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in raw.splitlines()]
    assert len(lines) == 3 and raw.endswith("\n") and "Ünïcödé → ok" in raw  # not \u-escaped
    assert lines[1]["start"] is None and lines[1]["speaker"] is None and lines[1]["translation_es"] is None
    assert "NaN" not in raw
    assert lines[0]["words"] == df["words"].iloc[0] and lines[0]["translation_es"] == "Hola."
    assert lines[0]["turn_index"] == 0 and lines[0]["formatted"] is True
    assert jsonl_text(pd.read_parquet(to_parquet(df, tmp_path / "t.parquet"))) == raw  # arrays or lists: same JSON


# ------------------------------------------------------------------------------------------- SRT/VTT


def test_srt_exact_text():
    df = frame(turn(0, "Hello and welcome.", 0.3, 2.92), turn(1, "Second turn.", 4.04, 6.8, speaker="B"))
    assert to_srt(df) == (
        "1\n"
        "00:00:00,300 --> 00:00:02,920\n"
        "Hello and welcome.\n"
        "\n"
        "2\n"
        "00:00:04,040 --> 00:00:06,800\n"
        "B: Second turn.\n"
    )


def test_srt_hours_and_path_writer(tmp_path):
    df = frame(turn(0, "Late.", 3723.5, 3725.0))
    text = to_srt(df, tmp_path / "late.srt")
    assert "01:02:03,500 --> 01:02:05,000" in text and (tmp_path / "late.srt").read_text(encoding="utf-8") == text


def test_vtt_header_dots_and_escaping(tmp_path):
    df = frame(turn(0, "Tom & Jerry <b>bold</b> --> x", 1.0, 2.5))
    text = to_vtt(df, tmp_path / "t.vtt")
    assert text == "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nTom &amp; Jerry &lt;b&gt;bold&lt;/b&gt; --&gt; x\n"
    assert (tmp_path / "t.vtt").read_text(encoding="utf-8") == text


def test_long_turns_wrap_to_two_lines_of_42_and_split_into_cues():
    text = ("This is a rather long sentence that somebody said in a meeting, and it keeps going on and on "
            "for quite a while, well past what fits in a single subtitle cue.")
    df = frame(turn(0, text, 10.0, 20.0))
    cues = parse_srt(to_srt(df))
    assert len(cues) > 1 and [c[0] for c in cues] == list(range(1, len(cues) + 1))
    assert all(1 <= len(lines) <= 2 and all(len(line) <= WIDTH for line in lines) for *_, lines in cues)
    assert " ".join(line for *_, lines in cues for line in lines) == text  # nothing lost, nothing reordered
    assert cues[0][1] == 10.0 and cues[-1][2] == 20.0
    assert all(a[2] <= b[1] for a, b in pairwise(cues))
    short = parse_srt(to_srt(frame(turn(0, "Short enough for one line.", 0.0, 1.0))))
    assert short[0][3] == ["Short enough for one line."]


def test_word_timings_place_the_split_cues():
    text = " ".join(f"word{i:02d}" for i in range(20))  # 139 characters: two cues
    df = frame(turn(0, text, 100.0, 106.0, words=words_for(text, start_ms=5000, step=300)))
    cues = subtitle_cues(df).cues
    assert len(cues) == 2
    first_count = sum(len(line.split()) for line in cues[0].lines)
    # the first cue ends when its last word ends; the second starts when its first word starts
    assert cues[0].end_ms == 100_000 + (first_count - 1) * 300 + 250
    assert cues[1].start_ms == 100_000 + first_count * 300


def test_a_word_longer_than_a_line_is_kept_whole():
    url = "https://example.com/" + "a" * 50
    cues = subtitle_cues(frame(turn(0, f"see {url} now", 0.0, 3.0))).cues
    lines = [line for cue in cues for line in cue.lines]
    assert url in lines and all(len(line) <= WIDTH for line in lines if line != url)


def test_cues_never_overlap_and_are_never_zero_length():
    df = frame(
        turn(0, "Overlaps the next.", 1.0, 3.0),
        turn(1, "Zero length.", 2.0, 2.0),
        turn(2, "Same start.", 2.0, 2.1),
        turn(3, "Tiny.", 5.0, 5.001),
        turn(4, "Later.", 9.0, 10.0),
    )
    cues = parse_srt(to_srt(df, min_duration=0.5))
    assert len(cues) == 5
    assert all(end - start >= 0.5 - 1e-9 for _, start, end, _ in cues)
    assert all(a[2] <= b[1] for a, b in pairwise(cues))
    assert cues[0][1:3] == (1.0, 2.0) and cues[-1][1:3] == (9.0, 10.0)  # cut at the next start; untouched
    vtt = subtitle_cues(df).cues
    assert all(b.start_ms >= a.end_ms > a.start_ms for a, b in pairwise(vtt))


def test_translation_as_its_own_file_or_as_a_second_line():
    df = frame(turn(0, "Good morning.", 1.0, 2.0, speaker="A"), turn(1, "Not translated.", 3.0, 4.0),
               es=["Buenos días.", None])
    with pytest.warns(UserWarning, match="1 of 2 turns have no translation"):
        spanish = parse_srt(to_srt(df, translation="es"))
    assert [c[3] for c in spanish] == [["A: Buenos días."]]
    with pytest.warns(UserWarning, match="no translation"):
        assert to_srt(df, translation="Spanish").startswith("1\n00:00:01,000 --> 00:00:02,000\nA: Buenos días.")

    both = parse_srt(to_srt(df, bilingual="es"))
    assert [c[3] for c in both] == [["A: Good morning.", "Buenos días."], ["Not translated."]]
    vtt = to_vtt(df, bilingual="es")
    assert "00:00:01.000 --> 00:00:02.000\nA: Good morning.\nBuenos días.\n" in vtt


def test_bilingual_long_turns_keep_one_line_of_each():
    en = "The words appear on the screen while you are speaking to the whole room today."
    es = "Las palabras aparecen en la pantalla mientras hablas a toda la sala hoy mismo."
    cues = subtitle_cues(frame(turn(0, en, 0.0, 6.0), es=[es]), bilingual="es").cues
    assert len(cues) == 2 and all(len(c.lines) == 2 and max(map(len, c.lines)) <= WIDTH for c in cues)
    assert " ".join(c.lines[0] for c in cues) == en and " ".join(c.lines[1] for c in cues) == es


def test_speaker_prefix_only_when_there_is_a_speaker():
    df = frame(turn(0, "I speak.", 0.0, 1.0, speaker="A"), turn(1, "Nobody known.", 2.0, 3.0),
               turn(2, "Blank speaker.", 4.0, 5.0, speaker=" "))
    assert [c[3] for c in parse_srt(to_srt(df))] == [["A: I speak."], ["Nobody known."], ["Blank speaker."]]
    assert parse_srt(to_srt(df, speakers=False))[0][3] == ["I speak."]
    long_word = '=HYPERLINK("https://example.com","Click")'  # 41 characters: with "B: " past the width
    said = frame(turn(0, long_word, 4.0, 6.0, speaker="B"), es=["Haz clic"])
    for cues in (subtitle_cues(said).cues, subtitle_cues(said, bilingual="es").cues):
        assert len(cues) == 1 and cues[0].lines[0] == f"B: {long_word}"  # the label is never alone on a line


def test_turns_without_times_are_skipped_and_counted():
    df = frame(turn(0, "Timed.", 0.0, 1.0), turn(1, "Untimed."), turn(2, "Also timed.", 2.0, 3.0))
    assert subtitle_cues(df).skipped_untimed == 1
    with pytest.warns(UserWarning, match="1 of 3 turns have no start/end time"):
        text = to_vtt(df)
    assert "Untimed." not in text and text.count(" --> ") == 2


# ---------------------------------------------------------------------------------------------- Markdown


def test_markdown_escapes_what_markdown_would_interpret():
    assert escape_markdown("*bold* _it_ [link](http://e.x) <b>x</b> `code` # $5 | a~b & c\\d") == (
        r"\*bold\* \_it\_ \[link\](http://e.x) \<b\>x\</b\> \`code\` \# \$5 \| a\~b \& c\\d"
    )
    assert escape_markdown("- not a list") == r"\- not a list"
    assert escape_markdown("1. not a list") == r"1\. not a list"
    assert escape_markdown("= not a heading underline") == r"\= not a heading underline"
    assert escape_markdown("two\n\nparagraphs") == "two paragraphs"


def test_markdown_transcript_has_time_speaker_text_and_italic_translations(tmp_path):
    df = frame(turn(0, "Hello *world*.", 65.4, 67.0, speaker="A"), turn(1, "No speaker here.", 70.0, 71.0),
               es=["Hola *mundo*.", None])
    text = to_markdown(df, tmp_path / "t.md")
    assert text == (
        "# Transcript\n"
        "\n"
        "**1:05 · A**  \n"
        "Hello \\*world\\*.  \n"
        "*es: Hola \\*mundo\\*.*\n"
        "\n"
        "**1:10**  \n"
        "No speaker here.\n"
    )
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == text
    assert "*es:" not in to_markdown(df, translations=False) and to_markdown(df, title=None).startswith("**1:05")


# --------------------------------------------------------------------------------- export(), sessions


def test_export_picks_the_format_from_the_suffix(tmp_path):
    df = rich_frame()
    with pytest.warns(UserWarning, match="no start/end time"):  # rich_frame has an untimed turn
        written = {suffix: export(df, tmp_path / f"out{suffix}")
                   for suffix in (".csv", ".parquet", ".jsonl", ".srt", ".vtt", ".md")}
    assert all(path.exists() for path in written.values())
    assert written[".csv"].read_bytes().decode("utf-8") == csv_text(df)
    pd.testing.assert_frame_equal(pd.read_parquet(written[".parquet"]), df)
    assert written[".jsonl"].read_text(encoding="utf-8") == jsonl_text(df)
    with pytest.warns(UserWarning):
        assert written[".srt"].read_text(encoding="utf-8") == to_srt(df)
    assert written[".vtt"].read_text(encoding="utf-8").startswith("WEBVTT\n\n")
    assert written[".md"].read_text(encoding="utf-8") == to_markdown(df)
    assert export(df, tmp_path / "UPPER.CSV", excel=True).read_bytes().startswith(b"\xef\xbb\xbf")  # options pass on
    with pytest.warns(UserWarning, match="no translation"):
        assert "Hola." in export(df, tmp_path / "es.srt", translation="es").read_text(encoding="utf-8")


def saved_session(serve, make_wav, tmp_path: Path) -> Path:
    server = serve(turns_script(even_turns(["one two three", "four five six"]), "A"))
    folder = tmp_path / "session"
    session = Session(make_wav(4.0), url=server.url, api_key=API_KEY, realtime=False, folder=folder).start().wait(timeout=20)
    assert len(session.df) == 2
    return folder


def test_export_session_writes_every_format_into_the_folder(serve, make_wav, tmp_path):
    folder = saved_session(serve, make_wav, tmp_path)
    df = load_session(folder)
    append_translations(folder, [Translation(session_id=sid, turn_order=int(order), target="es", source=text,
                                             text=f"es: {text}", backend="test", model="none")
                                 for sid, order, text in zip(df["session_id"], df["turn_order"], df["text"])])
    before = {name: (folder / name).read_bytes() for name in ("turns.jsonl", "audio.wav", "meta.json", "translations.jsonl")}

    written = export_session(folder)
    names = sorted(p.name for p in written)
    assert names == sorted(["transcript.csv", "transcript.parquet", "transcript.jsonl", "transcript.srt",
                            "transcript.es.srt", "transcript.vtt", "transcript.es.vtt", "transcript.md"])
    assert all(p.parent == folder and p.stat().st_size > 0 for p in written)
    assert {name: (folder / name).read_bytes() for name in before} == before  # the session's own files untouched

    loaded = load_session(folder)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "transcript.parquet"), loaded)
    srt = (folder / "transcript.srt").read_text(encoding="utf-8")
    assert [c[3] for c in parse_srt(srt)] == [["One two three."], ["Four five six."]]
    assert "es: One two three." in (folder / "transcript.es.vtt").read_text(encoding="utf-8")
    assert "*es: es: Four five six.*" in (folder / "transcript.md").read_text(encoding="utf-8")
    assert len((folder / "transcript.jsonl").read_text(encoding="utf-8").splitlines()) == 2

    only = export_session(folder, formats=["srt", ".CSV"], stem="again", translations=False)
    assert [p.name for p in only] == ["again.srt", "again.csv"]


def test_errors_are_clear(tmp_path):
    df = rich_frame()
    with pytest.raises(ConfigurationError, match=r"suffix among \.csv"):
        export(df, tmp_path / "out.xlsx")
    with pytest.raises(ValueError, match="'text' column"):  # ConfigurationError is a ValueError
        to_srt(df.drop(columns=["text"]))
    with pytest.raises(ConfigurationError, match="'text' column"):
        to_parquet(df.drop(columns=["text"]), tmp_path / "x.parquet")
    with pytest.raises(ConfigurationError, match=r"no 'translation_de' column.*translations into: es"):
        to_vtt(df, translation="de")
    with pytest.raises(ConfigurationError, match="no 'translation_fr' column"):
        to_markdown(df, translations=["fr"])
    with pytest.raises(ConfigurationError, match="not both"):
        to_srt(df, translation="es", bilingual="es")
    with pytest.raises(ConfigurationError, match="unknown export format 'docx'"):
        export_session(tmp_path, formats=["docx"])
    with pytest.raises(ConfigurationError, match="session's own record"):
        export(df, tmp_path / "turns.jsonl")
    with pytest.raises(ConfigurationError, match="expected a turns DataFrame"):
        csv_text([{"text": "x"}])
    with pytest.raises(SavedSessionError, match="no saved session"):
        export_session(tmp_path / "nothing-here")


# ---------------------------------------------------------------------------------------------- notebook


@pytest.mark.timeout(300)
def test_export_notebook_runs_and_shows_every_format(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o["output_type"] == "error"]
    texts = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    markdown = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)

    assert re.search(r"^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\nHello and welcome", texts, re.MULTILINE)  # the SRT text
    assert re.search(r"^WEBVTT\n\n00:00:\d\d\.\d{3} --> ", texts, re.MULTILINE)
    assert markdown.startswith("# Transcript") and "Hello and welcome" in markdown and "*es: " in markdown
    assert "Parquet round trip: same frame, 3 turns" in texts
    assert "'=HYPERLINK(" in texts  # the guarded cell, raw and read back

    (folder,) = (tmp_path / "sessions").iterdir()
    for name in ("transcript.csv", "transcript.parquet", "transcript.jsonl", "transcript.srt", "transcript.es.srt",
                 "transcript.vtt", "transcript.es.vtt", "transcript.md", "with_formula.csv"):
        assert (folder / name).stat().st_size > 0, name
    with open(folder / "with_formula.csv", newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f))[-1]["text"].startswith("'=HYPERLINK(")
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "transcript.parquet"), load_session(folder))
