"""Write the notebooks that are generated from code: ``python scripts/make_notebooks.py``.

notebooks/02_live_translation.ipynb      live translation, prompt tweaking while it runs, translate() on any DataFrame
notebooks/03_coaching.ipynb              a coaching report on a session: metrics, chart, the model's analysis, a prompt
notebooks/04_browser_microphone.ipynb    the page's microphone for remote kernels (a sample file when run headless)
notebooks/05_protocol_tour.ipynb         the v3 messages as they arrive, partial vs final, turn detection, latency
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}

LIVE_TRANSLATION = [
    new_markdown_cell(
        "# Live translation\n\n"
        "Each finished turn is translated once, as it settles, off the stream: the transcript never waits for a "
        "translation. Everything here runs offline on the embedded default (no key): Apertium for instant, literal "
        "translation, a local 1.5B model when you want a prompt. With `ASSEMBLYAI_API_KEY` set, the same calls use "
        "AssemblyAI's cloud and LLM Gateway."
    ),
    new_code_cell(
        "import live_stt_kernel as lsk\n"
        "from live_stt_kernel.samples import sample_wav\n\n"
        "session = lsk.start(sample_wav(), translate_to=\"es\")  # returns at once; the sample plays in real time\n"
        "session"
    ),
    new_code_cell(
        "session.wait(timeout=120)  # a file ends by itself; for a microphone call session.stop()\n"
        "session.df[[\"start\", \"text\", \"translation_es\"]]"
    ),
    new_markdown_cell(
        "## Tweak the prompt while it runs\n\n"
        "`configure()` changes the translator, targets or prompt for the turns that settle from now on; "
        "`retranslate()` applies them to the earlier turns (unchanged requests come from the cache)."
    ),
    new_code_cell(
        "session.translation.configure(translator=lsk.resolve_translator(\"local\"),\n"
        "                              prompt=\"Translate into {language}. Speak to a friend: use tú, keep it short.\")\n"
        "session.translation.retranslate()\n"
        "session.translation.wait(timeout=300)\n"
        "session.df[[\"text\", \"translation_es\"]]"
    ),
    new_code_cell(
        "# any turns DataFrame: a live session's, or one loaded from its folder\n"
        "df = lsk.load_session(session.folder)\n"
        "lsk.translate(df, to=\"de\", translator=\"local\")[[\"text\", \"translation_es\", \"translation_de\"]]"
    ),
]

COACHING = [
    new_markdown_cell(
        "# Coaching a conversation\n\n"
        "`lsk.coach(df)` reads a whole conversation: speaking metrics computed exactly in Python (pace, fillers, "
        "hedges, pauses, long sentences, questions, repeated words, each with the exact words said), then a language "
        "model's written analysis built on those numbers. The bundled coaching sample is a short meeting update with "
        "the habits a coach looks for."
    ),
    new_code_cell(
        "import live_stt_kernel as lsk\n"
        "from live_stt_kernel.samples import coaching_sample\n\n"
        "session = lsk.start(coaching_sample(), realtime=False, panel=False).wait(timeout=120)\n"
        "df = lsk.load_session(session.folder)  # any turns DataFrame works: a live session's or a saved one\n"
        "df[[\"start\", \"end\", \"text\"]]"
    ),
    new_markdown_cell("## The metrics alone\n\nNo model needed: the report still says what to work on, with quotes."),
    new_code_cell("metrics_only = lsk.coach(df, use_llm=False)\nmetrics_only"),
    new_code_cell("metrics_only.chart()  # pace per turn against the comfortable band; fillers and hedges"),
    new_markdown_cell(
        "## With a model\n\n"
        "Offline this is the local 1.5B model (about 15-25 s here); with a key, the LLM Gateway. The analysis comes "
        "first, the computed metrics stay below it, and any quote the model made up is flagged."
    ),
    new_code_cell("report = lsk.coach(df)\nreport"),
    new_markdown_cell("## Your own prompt"),
    new_code_cell(
        "custom = lsk.coach(df, max_tokens=300, prompt=(\n"
        "    \"You coach product managers giving a short stand-up update. Write three bullet points: what to keep, \"\n"
        "    \"what to cut, and one sentence to rehearse. Quote the transcript exactly.\"))\n"
        "custom"
    ),
]

BROWSER_MICROPHONE = [
    new_markdown_cell(
        "# The browser's microphone\n\n"
        "On JupyterHub, Colab or Binder the kernel runs on a server with no microphone. `BrowserMic` records in "
        "your browser instead: 16 kHz audio in numbered 50 ms chunks over the widget's connection, put back in order "
        "in the kernel. The page must be a secure context (https, or http://localhost), and the browser asks you "
        "for permission once."
    ),
    new_code_cell("from live_stt_kernel.widgets import BrowserMic\n\nmic = BrowserMic()\nmic"),
    new_markdown_cell(
        "Click **Start microphone** above and allow it, then run the next cell and speak. **Stop** in the widget "
        "ends the session (end-of-file). Run without a browser (as the test suite does), nobody clicks: the next "
        "cell streams the bundled sample instead, so the notebook still runs top to bottom."
    ),
    new_code_cell(
        "import live_stt_kernel as lsk\n"
        "from live_stt_kernel.samples import sample_wav\n\n"
        "source = mic.source if mic.state == \"recording\" else sample_wav()\n"
        "session = lsk.start(source, translate_to=\"es\")  # the live panel shows the words as you speak\n"
        "session"
    ),
    new_code_cell(
        "session.wait(timeout=600)  # until Stop in the widget (or the end of the sample)\n"
        "session.df[[\"start\", \"text\", \"translation_es\"]]"
    ),
    new_markdown_cell(
        "What reached the kernel: chunks, silence put in for chunks that never came, late or reordered ones, and how "
        "far the kernel is behind the page (`lag_ms`: a busy kernel keeps the chunks and catches up)."
    ),
    new_code_cell(
        "{name: getattr(mic, name) for name in (\"state\", \"chunks\", \"gaps\", \"late\", \"reordered\", \"lag_ms\", "
        "\"seconds\")}"
    ),
]

PROTOCOL_TOUR = [
    new_markdown_cell(
        "# A tour of the streaming protocol\n\n"
        "AssemblyAI's Universal Streaming v3 is a WebSocket: the client sends raw audio (50–1000 ms binary frames) and "
        "a few JSON commands; the server answers with JSON messages. The embedded local server speaks the same "
        "protocol, so everything below is what the cloud would send too. Here we record every message of one session "
        "as it arrives."
    ),
    new_code_cell(
        "import pandas as pd\n\n"
        "import live_stt_kernel as lsk\n"
        "from live_stt_kernel.v3 import protocol\n"
        "from live_stt_kernel.samples import sample_wav\n\n"
        "params = lsk.StreamingParams(format_turns=True)\n"
        "print(protocol.build_url(\"ws://127.0.0.1:8765\", params))  # what the client asks for (no key in the URL)\n\n"
        "events = []  # the listener runs on the session's worker thread: keep it quick\n"
        "session = lsk.Session(sample_wav(), params=params, folder=None, on_event=events.append)\n"
        "session.start().wait(timeout=120)  # real time, so the server has time to send partials\n"
        "len(events)"
    ),
    new_markdown_cell(
        "## The messages, in order\n\n"
        "`Begin` opens the session. Then `Turn` messages: **partials** (`end_of_turn` false) are the server's current "
        "guess while someone speaks, and their words become final (`word_is_final`) once they stop changing; a "
        "**final** (`end_of_turn` true) closes the turn. With `format_turns=true` a final comes twice: unformatted, "
        "then formatted (cased and punctuated) with the same `turn_order`. `Termination` (the `SessionEnded` event here) "
        "ends the session. The client parses each message into a small frozen event (`lsk.Turn`, `lsk.SessionBegan`...)."
    ),
    new_code_cell(
        "def row(e):\n"
        "    kind = type(e).__name__\n"
        "    if isinstance(e, lsk.Turn):\n"
        "        final_words = sum(w.is_final for w in e.words)\n"
        "        return {\"message\": \"Turn\", \"turn_order\": e.turn_order, \"end_of_turn\": e.end_of_turn,\n"
        "                \"formatted\": e.formatted, \"final words\": f\"{final_words}/{len(e.words)}\",\n"
        "                \"text\": e.transcript or \" \".join(w.text for w in e.words)}\n"
        "    return {\"message\": kind}\n\n"
        "table = pd.DataFrame([row(e) for e in events])\n"
        "table"
    ),
    new_markdown_cell("## One turn, from first guess to final"),
    new_code_cell("table[table.turn_order == 0]"),
    new_markdown_cell(
        "## How the turn ends\n\n"
        "The local server listens with a voice-activity detector. About 40 ms into a silence it starts decoding the "
        "turn; at 200 ms of silence (`min_turn_silence`) it ends the turn if that decode reads like a finished "
        "sentence, otherwise it waits up to 800 ms (`max_turn_silence`). AssemblyAI's cloud makes the same decision "
        "with a model of its own. Both can be tuned per session (`StreamingParams(min_turn_silence=..., "
        "max_turn_silence=...)`) or mid-session with `UpdateConfiguration`."
    ),
    new_markdown_cell(
        "## Latency per turn\n\n"
        "`end_of_turn_latency` is measured by the client: from sending the audio of the turn's last word to the "
        "arrival of its final."
    ),
    new_code_cell(
        "finals = session.df[[\"turn_index\", \"text\", \"end_of_turn_latency\"]]\n"
        "turns = table[table.message == \"Turn\"]\n"
        "print(f\"partials: {(~turns.end_of_turn.astype(bool)).sum()}, finals: {turns.end_of_turn.astype(bool).sum()}\")\n"
        "finals"
    ),
    new_markdown_cell(
        "## When the connection drops\n\n"
        "A v3 session cannot be resumed. When a connection drops after its session began, the client waits a moment "
        "(`Disconnected`), opens a **new session** and sends it the audio again from the end of the last finished "
        "turn, so the sentence that was being spoken is transcribed whole; a `Reconnected` event moves the clock so "
        "times run on. To see it, we run our own local server, stop it in the middle of the second sentence and "
        "start it again on the same port, while the audio keeps coming (a `QueueSource` stands in for a microphone)."
    ),
    new_code_cell(
        "import time\n\n"
        "import soundfile as sf\n\n"
        "from live_stt_kernel.local.recognizer import WhisperRecognizer\n"
        "from live_stt_kernel.local.server import LocalServer\n\n"
        "audio, rate = sf.read(sample_wav(), dtype=\"int16\")\n"
        "def pcm(start_s, end_s):\n"
        "    return audio[int(start_s * rate):int(end_s * rate)].tobytes()\n\n"
        "recognizer = WhisperRecognizer()\n"
        "server = LocalServer(recognizer, token=\"tour\").start()\n"
        "mic = lsk.QueueSource()\n"
        "drop_events = []\n"
        "dropped = lsk.Session(mic, url=server.url, api_key=\"tour\", folder=None, on_event=drop_events.append,\n"
        "                      reconnect=lsk.ReconnectPolicy(first_delay_s=0.2)).start()\n"
        "mic.push(pcm(0, 4.0))                      # the first sentence and a pause\n"
        "while not dropped.transcript.rows:\n"
        "    time.sleep(0.05)\n"
        "mic.push(pcm(4.0, 5.5))                    # the second sentence begins...\n"
        "time.sleep(0.5)\n"
        "server.stop()                              # ...and the server goes away\n"
        "mic.push(pcm(5.5, len(audio) / rate))      # the speaker goes on\n"
        "time.sleep(1.0)\n"
        "server = LocalServer(recognizer, token=\"tour\", port=server.port).start()  # back, same address\n"
        "mic.close()\n"
        "dropped.wait(timeout=60)\n"
        "server.stop()\n"
        "pd.DataFrame([row(e) | ({\"detail\": e.reason[:60]} if hasattr(e, \"reason\") else {})\n"
        "              for e in drop_events if not isinstance(e, lsk.Turn) or e.end_of_turn])"
    ),
    new_markdown_cell(
        "Two sessions, one transcript: the second sentence was sent again from where the first one ended, and its "
        "start time is where it was spoken in the recording."
    ),
    new_code_cell(
        "print(f\"sessions: {dropped.df.session_id.nunique()}, reconnects: {dropped.transcript.reconnects}\")\n"
        "dropped.df[[\"session_id\", \"start\", \"end\", \"text\"]]"
    ),
]


def write(name: str, cells: list) -> None:
    for number, cell in enumerate(cells):
        cell.id = f"cell-{number:02d}"  # stable ids: regenerating changes only what changed
    path = NOTEBOOKS / name
    nbformat.write(new_notebook(cells=cells, metadata=KERNEL), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    write("02_live_translation.ipynb", LIVE_TRANSLATION)
    write("03_coaching.ipynb", COACHING)
    write("04_browser_microphone.ipynb", BROWSER_MICROPHONE)
    write("05_protocol_tour.ipynb", PROTOCOL_TOUR)
