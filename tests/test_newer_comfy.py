"""The rules of newer ComfyUI (0.38.x sources) that 0.3.75 does not have, reproduced here so the
pack and the test harness are held to them on the engine the tests run (docs/DESIGN.md, "Newer
ComfyUI"):

- a V3 ``io.Combo`` value must be one of its options at queue time, unless the node's own
  ``validate_inputs`` takes that input (``execution.validate_inputs``);
- ``InterruptProcessingException`` derives from ``BaseException``, so ``except Exception`` no
  longer sees a Cancel;
- a client's ``prompt_id`` must be a UUID in canonical lowercase hyphenated form
  (``comfy_execution.jobs.validate_job_id``);
- ``Combo.Input`` gained parameters before ``socketless``, so only the first argument of an
  ``io.*.Input`` may be positional.
"""

from __future__ import annotations

import ast
import hashlib
import http.server
import inspect
import json
import threading
import uuid
from pathlib import Path

import pytest
import torch

from blended import downloads as weights
from blended.guidance import ClipGuidance, Guidance, RangeLoss
from blended.pixel.sampler import SamplerSettings, sample
from scripts.engine.comfy_engine import ComfyServer, is_prompt_id, new_prompt_id
from tests.support.sd15_fixture import comfy_engine_path

ROOT = Path(__file__).resolve().parent.parent


class Interrupt(BaseException):
    """Newer ComfyUI's InterruptProcessingException."""


class OldInterrupt(Exception):
    """ComfyUI 0.3.75's InterruptProcessingException."""


# --- V3 combo values are checked at queue time ----------------------------------------------------


def newest_combo_errors(node_cls, inputs: dict) -> list[str]:
    """The widget part of newer ComfyUI's ``execution.validate_inputs``, written from its source:
    an input the node's ``validate_inputs`` does not take (and no ``**kwargs``) must be one of a
    COMBO's ``options``; then ``validate_inputs`` runs on the inputs it takes and anything but True
    is an error."""
    from comfy_api.internal import first_real_override

    class_inputs = node_cls.INPUT_TYPES()
    validate = first_real_override(node_cls, "validate_inputs")
    args, kwargs = [], False
    if validate is not None:
        spec = inspect.getfullargspec(validate)
        args, kwargs = spec.args, spec.varkw is not None
    errors = []
    for name, value in inputs.items():
        kind, extra = {**class_inputs.get("required", {}), **class_inputs.get("optional", {})}[name][:2]
        if name in args or kwargs:
            continue
        options = extra.get("options", []) if kind == "COMBO" else kind if isinstance(kind, list) else None
        if options is not None and value not in options:
            errors.append(f"value_not_in_list: {name}: {value!r}")
    if validate is not None:
        taken = {k: v for k, v in inputs.items() if k in args or kwargs}
        result = validate(**taken)
        if result is not True:
            errors.append(f"custom_validation_failed: {result}")
    return errors


@pytest.fixture(scope="module")
def nodes():
    try:
        comfy_engine_path()
    except SystemExit as missing:
        pytest.skip(str(missing))
    from blended_diffusion_pack.nodes import comfy_glue, loaders, sampler_node

    comfy_glue.register_model_folders()
    return loaders, sampler_node


def test_a_known_model_not_yet_downloaded_is_accepted_at_queue_time(nodes):
    loaders, _ = nodes
    missing = [name for name in weights.KNOWN_WEIGHTS
               if loaders.glue.model_path("blended_diffusion", name) is None]
    assert missing, "every known model is on disk here; the check needs one that is not"
    for name in missing:
        assert newest_combo_errors(loaders.BlendedDiffusionModelLoader, {"model_name": name}) == []


@pytest.mark.parametrize("node, field, value", [
    ("BlendedDiffusionModelLoader", "model_name", "nope.pt"),  # the loader says where it belongs, at run time
    ("BlendedDiffusionModelLoader", "model_name", "../input/blended_object.png"),
    ("BlendedLPIPSLoader", "lpips_name", "lpips_not_here.safetensors"),
])
def test_file_inputs_never_get_value_not_in_list(nodes, node, field, value):
    loaders, _ = nodes
    assert newest_combo_errors(getattr(loaders, node), {field: value}) == []


def test_openais_clip_file_not_yet_downloaded_is_accepted_and_fetched_as_the_hub_weights(nodes, monkeypatch):
    loaders, _ = nodes
    name = weights.CLIP_VIT_B16.filename
    assert loaders.glue.clip_file(name, hint=False) is None
    assert newest_combo_errors(loaders.BlendedCLIPLoader, {"clip_name": name}) == []
    asked = []
    monkeypatch.setattr(loaders.BlendedCLIPLoader, "_hub_weights", staticmethod(lambda: asked.append(1) or "x"))
    monkeypatch.setattr(loaders, "load_clip", lambda source, device: source)
    assert loaders.BlendedCLIPLoader.execute(clip_name=name).result == ("x",) and asked == [1]


def test_the_clip_loader_refuses_a_missing_file_in_its_own_words(nodes):
    loaders, _ = nodes
    assert newest_combo_errors(loaders.BlendedCLIPLoader, {"clip_name": loaders.HUB_DEFAULT}) == []
    (error,) = newest_combo_errors(loaders.BlendedCLIPLoader, {"clip_name": "nope.safetensors"})
    assert error.startswith("custom_validation_failed") and "blended_clip" in error


@pytest.mark.parametrize("node, field", [("BlendedDiffusionModelLoader", "model_name"),
                                         ("BlendedLPIPSLoader", "lpips_name")])
def test_a_file_input_that_is_not_a_name_is_refused(nodes, node, field):
    loaders, _ = nodes
    (error,) = newest_combo_errors(getattr(loaders, node), {field: 3})
    assert error.startswith("custom_validation_failed") and field in error


def test_the_rule_itself_refuses_an_ordinary_combo_value(nodes):
    """The validator above is not a no-op: a sampler method outside its options is refused, as
    newer ComfyUI refuses it (0.3.75 leaves it to the node's own check at run time)."""
    _, sampler_node = nodes
    errors = newest_combo_errors(sampler_node.BlendedSampler, {"method": "euler"})
    assert errors == ["value_not_in_list: method: 'euler'"]


# --- interrupts derived from BaseException ---------------------------------------------------------


PAYLOAD = bytes(range(256)) * (3 * 4096)  # 3 MiB


@pytest.fixture
def download(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BLENDED_OFFLINE", raising=False)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(PAYLOAD) - start))
            self.end_headers()
            self.wfile.write(PAYLOAD[start:])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield weights.WeightFile("w.pt", "blended_diffusion", f"http://127.0.0.1:{httpd.server_port}/w.pt", "test",
                             size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("kind", [Interrupt, OldInterrupt])
def test_cancel_mid_download_keeps_the_part_and_reaches_comfyui_unchanged(download, tmp_path, kind):
    def cancel_after_a_megabyte(done, total):
        if done >= 1 << 20:
            raise kind("cancel")

    with pytest.raises(kind):  # not turned into a download error, not swallowed
        weights.ensure_file(download, tmp_path, progress=cancel_after_a_megabyte)
    part = tmp_path / "w.pt.part"
    assert part.stat().st_size >= 1 << 20 and not (tmp_path / "w.pt").exists()
    assert weights.ensure_file(download, tmp_path).read_bytes() == PAYLOAD  # resumed, verified


@pytest.mark.parametrize("kind", [Interrupt, OldInterrupt])
def test_cancel_mid_sampling_stops_at_once_and_restores_the_model(tiny_model, tiny_clip, kind):
    size = tiny_model.image_size
    image = torch.zeros(2, 3, size, size)
    mask = torch.zeros(2, 1, size, size)
    mask[..., 8:24, 8:24] = 1
    guidance = Guidance((ClipGuidance(tiny_clip, "a red ball", weight=100.0), RangeLoss()))
    steps = []

    def cancel_at_third_step(step, total, x0):
        steps.append(step)
        if len(steps) == 3:
            raise kind("cancel")

    # memory="low": the sampler turns checkpointing on for the run and must turn it off on the way out
    settings = SamplerSettings("8", skip_timesteps=0, memory="low")
    with pytest.raises(kind):
        sample(tiny_model, image, mask, guidance, settings, seeds=[1, 2], callback=cancel_at_third_step)
    assert len(steps) == 3  # no out-of-memory retry, no further chunk
    assert not tiny_model.unet.checkpointing


# --- prompt ids --------------------------------------------------------------------------------------


def test_prompt_id_rule():
    fresh = new_prompt_id()
    assert is_prompt_id(fresh) and fresh != new_prompt_id()
    for bad in ("blended-headless-1", fresh.upper(), fresh.replace("-", ""), "{" + fresh + "}", 7, None):
        assert not is_prompt_id(bad), bad


def test_the_harness_sends_a_canonical_uuid_prompt_id(tmp_path):
    """A stand-in /prompt that applies newer ComfyUI's rule (400 "prompt_id must be a valid UUID")."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            supplied = body.get("prompt_id")
            try:
                ok = supplied is None or str(uuid.UUID(supplied)) == supplied
            except (TypeError, ValueError):
                ok = False
            answer = {"prompt_id": supplied or str(uuid.uuid4()), "number": 0, "node_errors": {}} if ok else \
                {"error": {"type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID"}, "node_errors": {}}
            data = json.dumps(answer).encode()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server = ComfyServer(tmp_path, tmp_path, port=httpd.server_port)  # not started: the stand-in answers
        ids = [server.queue_prompt({"1": {}}), server.queue_prompt({"1": {}}, client_id="ui")]
        assert [body["prompt_id"] for body in received] == ids and ids[0] != ids[1]
        assert all(str(uuid.UUID(i)) == i for i in ids)
        with pytest.raises(ValueError, match="canonical UUID"):
            server.queue_prompt({"1": {}}, prompt_id="blended-1")
        assert len(received) == 2  # refused before it was sent
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- only the first argument of an io.*.Input is positional ---------------------------------------


def positional_io_arguments(source: str, filename: str = "<string>") -> list[str]:
    """Calls like ``io.Combo.Input("x", options)``: newer ComfyUI put new parameters before
    ``socketless`` in Combo.Input, so a second positional argument can land in another slot."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("Input", "Output"):
            if len(node.args) > 1 or any(isinstance(a, ast.Starred) for a in node.args):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node.func)} with {len(node.args)} positional")
    return found


def test_io_inputs_take_every_argument_but_the_first_by_keyword():
    assert positional_io_arguments('io.Combo.Input("method", ["ddpm", "ddim"])')  # the check can fail
    assert not positional_io_arguments('io.Combo.Input("method", options=["ddpm", "ddim"])')
    found = []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        found += positional_io_arguments(path.read_text(), path.name)
    assert not found, found
