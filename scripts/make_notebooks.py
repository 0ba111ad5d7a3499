"""Write notebooks/02_translate_and_coach.ipynb (run: python scripts/make_notebooks.py)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Translate and coach\n\n"
        "Each finished turn is translated once, as it settles, off the stream; afterwards the whole conversation gets a "
        "coaching report. Everything here runs offline on the embedded default (no key): Apertium for instant "
        "translation, a local 1.5B model for prompts and analysis. With `ASSEMBLYAI_API_KEY` set, the same calls use "
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
        "session.translations.configure(translator=lsk.resolve_translator(\"local\"),\n"
        "                               prompt=\"Translate into {language}. Speak to a friend: use tú, keep it short.\")\n"
        "session.translations.retranslate()\n"
        "session.translations.wait(timeout=300)\n"
        "session.df[[\"text\", \"translation_es\"]]"
    ),
    new_code_cell(
        "# any turns DataFrame: a live session's, or one loaded from its folder\n"
        "df = lsk.load_session(session.folder)\n"
        "lsk.translate(df, to=\"de\", translator=\"local\")[[\"text\", \"translation_es\", \"translation_de\"]]"
    ),
    new_markdown_cell(
        "## Coaching\n\n"
        "The metrics are computed exactly in Python; the model gets them with the transcript and writes the analysis. "
        "Without a model (`use_llm=False`) the metrics alone still read as a report."
    ),
    new_code_cell("metrics_only = lsk.coach(df, use_llm=False)\nmetrics_only"),
    new_code_cell("metrics_only.chart()"),
    new_code_cell("report = lsk.coach(df)  # the local model here; the LLM Gateway with a key\nreport"),
]
notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
path = Path(__file__).resolve().parent.parent / "notebooks" / "02_translate_and_coach.ipynb"
nbformat.write(notebook, path)
print(f"wrote {path}")
