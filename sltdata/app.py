"""`sltdata app`: a local web demo of a trained run (Gradio; ``pip install sltdata[app]``).

A person uploads a video or a ``.pose`` file (or picks a key of a store given with ``--store``) and
sees the skeleton animation (``sltdata.view``), the top-5 signs with their probabilities (or the
decoded text of a ctc / seq2seq run) and, with ``--compose MODEL``, a sentence made of the signs of
the clips uploaded so far (seed 001's last step). Everything goes through ``sltdata.predict`` and
``sltdata.compose``: the app holds no preprocessing or decoding of its own, so what the page shows
is what ``sltdata predict --json`` prints for the same file.

The results table has fixed element ids (``predictions``: one row per sign, label and score with
four decimals; ``sentence``) so a browser test can read them.
"""

from __future__ import annotations

import html
import logging
import tempfile
from pathlib import Path

from sltdata.errors import SltdataError

log = logging.getLogger(__name__)

MAX_ANIMATION_FRAMES = 150  # ~5 s at 30 fps; longer sequences are drawn with every n-th frame


class Demo:
    """The app's state apart from the UI: a loaded run, an optional composer and store."""

    def __init__(self, run: str | Path, checkpoint: str = "best", device: str = "auto", compose: str | None = None,
                 store: str | Path | None = None, top_k: int = 5):
        from sltdata.predict import Predictor

        self.predictor = Predictor(run, checkpoint, device)
        self.top_k = top_k
        self.composer = None
        if compose is not None:
            from sltdata.compose import load_composer

            self.composer = load_composer(compose)
        self.store = None
        if store is not None:
            from sltdata.store import Store

            self.store = Store(store)
        self._tmp = tempfile.TemporaryDirectory(prefix="sltdata-app-")

    def store_keys(self, limit: int = 1000) -> list[str]:
        if self.store is None:
            return []
        return self.store.metadata(("key",)).column("key").to_pylist()[:limit]

    def analyse_path(self, path: str | Path) -> tuple[list, dict]:
        """Items read from one upload and its record (the first sequence it holds)."""
        from sltdata.predict import read_inputs

        items = list(read_inputs([path], transform=self.predictor.transform))
        return self._analyse(items)

    def analyse_key(self, key: str) -> tuple[list, dict]:
        from sltdata.predict import Item

        seq = self.store.get(key)
        return self._analyse([Item(str(self.store.path), seq.key, landmarks=seq.landmarks,
                                   layout=self.store.layout(seq.layout))])

    def _analyse(self, stream: list) -> tuple[list, dict]:
        from sltdata.predict import Failure

        fails = [x for x in stream if isinstance(x, Failure)]
        items = [x for x in stream if not isinstance(x, Failure)]
        if not items:
            raise SltdataError(str(fails[0]) if fails else "no sequence in the upload")
        result = self.predictor.run(items[:1], top_k=self.top_k)
        if result.failures:
            raise SltdataError(str(result.failures[0]))
        return items[:1], result.records[0]

    def animation(self, item, title: str) -> Path:
        """The upload's skeleton as a GIF (``sltdata.view``), at most MAX_ANIMATION_FRAMES frames."""
        from sltdata.sequence import Sequence
        from sltdata.view import DEFAULT_FPS, animate, raw_panel

        step = max(1, -(-len(item.landmarks) // MAX_ANIMATION_FRAMES))
        seq = Sequence(key=item.key, landmarks=item.landmarks[::step], layout=item.layout.name)
        out = Path(self._tmp.name) / f"{abs(hash((item.input, item.key)))}.gif"
        return animate([raw_panel(seq, item.layout)], out, title, fps=DEFAULT_FPS / step)

    def sentence(self, signs: list[str]) -> str:
        from sltdata.compose import collapse_repeats

        return self.composer.compose(collapse_repeats(signs)) if self.composer is not None else ""


def results_html(record: dict) -> str:
    """The record as a table with fixed ids (label, score to four decimals) or the decoded text."""
    if "predictions" in record:
        rows = "".join(f'<tr class="prediction"><td class="label">{html.escape(p["label"])}</td>'
                       f'<td class="score">{p["score"]:.4f}</td></tr>' for p in record["predictions"])
        return (f'<table id="predictions" data-key="{html.escape(record["key"])}"><thead><tr><th>sign</th>'
                f'<th>probability</th></tr></thead><tbody>{rows}</tbody></table>')
    return f'<p id="text">{html.escape(record["text"])}</p>'


def build_app(demo: Demo):
    """The Gradio Blocks UI over a ``Demo``."""
    import gradio as gr

    def show(items, record, signs):
        item = items[0]
        sign = record["predictions"][0]["label"] if "predictions" in record else record["text"]
        signs = [*signs, sign]
        gif = str(demo.animation(item, f"{item.key}: {sign}"))
        sentence = demo.sentence(signs)
        return gif, results_html(record), " ".join(signs), f'<p id="sentence">{html.escape(sentence)}</p>', signs

    def on_upload(file, signs):
        if file is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), signs
        path = file if isinstance(file, str) else file.name
        try:
            items, record = demo.analyse_path(path)
        except SltdataError as e:
            raise gr.Error(f"{Path(path).name}: {e}")
        return show(items, record, signs)

    def on_key(key, signs):
        if not key:
            return gr.update(), gr.update(), gr.update(), gr.update(), signs
        try:
            items, record = demo.analyse_key(key)
        except SltdataError as e:
            raise gr.Error(str(e))
        return show(items, record, signs)

    info = demo.predictor
    with gr.Blocks(title="sltdata demo") as ui:
        gr.Markdown(f"## sltdata demo: `{info.run_dir.name}` ({info.trainer.name})\n"
                    "Upload a signing video or a `.pose` file. Each upload adds its sign to the sentence.")
        signs = gr.State([])
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="video or .pose", file_types=[".mp4", ".avi", ".mov", ".mkv", ".webm",
                                                                      ".pose", ".parquet"], elem_id="upload")
                key = gr.Dropdown(demo.store_keys(), label="or a key of the store", visible=demo.store is not None,
                                  elem_id="store-key")
                clear = gr.Button("start a new sentence")
            with gr.Column():
                skeleton = gr.Image(label="skeleton", type="filepath", elem_id="skeleton")
            with gr.Column():
                table = gr.HTML(elem_id="results")
                history = gr.Textbox(label="signs so far", interactive=False, elem_id="signs")
                sentence = gr.HTML(elem_id="sentence-box", visible=demo.composer is not None)
        outputs = [skeleton, table, history, sentence, signs]
        upload.upload(on_upload, [upload, signs], outputs)
        key.change(on_key, [key, signs], outputs)
        clear.click(lambda: ([], "", ""), None, [signs, history, sentence])
    return ui


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 7860, *, checkpoint: str = "best",
          device: str = "auto", compose: str | None = None, store: str | Path | None = None) -> None:
    """Start the app and block; no sharing link, no analytics, nothing leaves the machine."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    ui = build_app(Demo(run, checkpoint, device, compose, store))
    ui.queue().launch(server_name=host, server_port=port, share=False, show_error=True, inbrowser=False)
