"""The Hub-ready checkpoint format of a hybrid: save, verify, load and push.

A checkpoint is a plain transformers folder (config.json, safetensors weights, tokenizer, generation
config) plus the model's own source files, so `AutoModelForCausalLM.from_pretrained(path,
trust_remote_code=True)` works on a machine without hybridserve. It also carries a model card
(README.md) and `hybridserve.json`, the machine-readable layer map and provenance.

Saving is atomic: everything is written into a hidden temp folder beside the target and renamed into
place, so readers (vLLM, a resumed run, `push_to_hub`) never see a half-written checkpoint.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import struct
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import cache_hybrid, configuration_hybrid, linear_attention, modeling_hybrid
from .memory import memory_summary
from .model_card import layer_map
from .model_card import write_model_card as _write_model_card  # a module global: tests make it fail mid-save

FORMAT_VERSION = 1
AUTO_MAP = {
    "AutoConfig": "configuration_hybrid.HybridConfig",
    "AutoModelForCausalLM": "modeling_hybrid.HybridForCausalLM",
}
# name next to the weights -> module whose file it is. The kernel references get flat names because
# linear_attention.py falls back to `.gated_delta_rule_naive` / `.gla_naive` when hybridserve is absent.
_SOURCE_MODULES = {
    "configuration_hybrid.py": configuration_hybrid.__name__,
    "modeling_hybrid.py": modeling_hybrid.__name__,
    "cache_hybrid.py": cache_hybrid.__name__,
    "linear_attention.py": linear_attention.__name__,
    "gated_delta_rule_naive.py": "hybridserve.kernels.gated_delta_rule.naive",
    "gla_naive.py": "hybridserve.kernels.gla.naive",
}
SOURCE_FILES = tuple(_SOURCE_MODULES)


class ExportError(Exception):
    """A checkpoint could not be saved, verified, loaded or pushed; the message says what to do."""


# ----------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------


def _source_paths() -> dict[str, Path]:
    # Module __file__s, not repository paths: the same code must work from an installed wheel.
    return {name: Path(importlib.import_module(mod).__file__) for name, mod in _SOURCE_MODULES.items()}


def _tmp_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


# Temp folders of saves running in this process (another thread may save to the same out_dir).
_ACTIVE: set[Path] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but is someone else's (or we cannot tell): assume it is still writing
    return True


def _clean_stale(out: Path) -> None:
    """Remove temp folders that a crashed save of `out` left behind.

    Temp names carry the writer's pid, so a save that is running right now in another process is left
    alone. An `.old` folder is a previous checkpoint moved aside by an overwrite: if the crash came
    between the two renames, `out` is missing and that folder is the only good copy, so it is restored.
    """
    if not out.parent.is_dir():
        return
    for stale in out.parent.iterdir():  # not glob(): out's name may hold glob metacharacters
        if not stale.name.startswith(_tmp_prefix(out)):
            continue
        try:
            pid = int(stale.name[len(_tmp_prefix(out)) :].split("-", 1)[0])
        except ValueError:
            continue  # not a name we made
        if (pid != os.getpid() and _pid_alive(pid)) or Path(str(stale).removesuffix(".old")) in _ACTIVE:
            continue  # another save is writing it right now
        if stale.name.endswith(".old") and not out.exists():
            os.replace(stale, out)
        else:
            shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` to disk, so the rename commits complete data."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:  # Windows cannot open folders; its rename is durable enough without this
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _hybridserve_version() -> str:
    try:
        from importlib.metadata import version

        return version("hybridserve")
    except Exception:
        return "unknown"


def _provenance(provenance: dict | None) -> dict:
    prov = dict(provenance or {})
    # Accept convert.teacher.TeacherInfo's field names too (source/kind/licence), so callers can pass
    # dataclasses.asdict(info) straight through.
    for alias, key in (("source", "teacher"), ("kind", "teacher_kind"), ("licence", "license")):
        if alias in prov and key not in prov:
            prov[key] = prov.pop(alias)
    if "hub_id" not in prov and prov.get("teacher_kind") == "hub" and prov.get("teacher"):
        prov["hub_id"] = prov["teacher"]
    prov.setdefault("hybridserve_version", _hybridserve_version())
    prov.setdefault("date", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return {k: v for k, v in prov.items() if v is not None}


def _write_config(tmp: Path) -> None:
    # Post-process the config.json that save_pretrained wrote instead of mutating the caller's config.
    path = tmp / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["auto_map"] = dict(AUTO_MAP)
    data["architectures"] = ["HybridForCausalLM"]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_generation_config(tmp: Path, config, generation_config) -> None:
    from transformers import GenerationConfig

    if generation_config is None:
        ids = {k: getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        generation_config = GenerationConfig(**{k: v for k, v in ids.items() if v is not None})
    generation_config.save_pretrained(tmp)


def _write_manifest(tmp: Path, config, prov: dict, summary: dict) -> None:
    manifest = {
        "format": "hybridserve-checkpoint",
        "format_version": FORMAT_VERSION,
        "layer_map": layer_map(config),
        "layer_types": list(config.layer_types),
        "softmax_layers": config.softmax_layers,
        "linear_layers": config.linear_layers,
        "linear_mixer": config.linear_mixer,
        "memory": summary,
        "provenance": prov,
    }
    # default=str: provenance is caller-supplied and may hold Paths or dates
    (tmp / "hybridserve.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def check_output_dir(out_dir, overwrite: bool) -> Path:
    """The absolute output path, or ExportError if writing there would replace data without --overwrite.

    Called by save_hybrid, and by the CLI before the (long) model build, so a refused export fails at once.
    """
    out = Path(out_dir).expanduser().absolute()
    _clean_stale(out)  # first: it may restore a checkpoint that a crashed overwrite had moved aside
    if out.exists() and not out.is_dir():
        raise ExportError(f"output path {out} exists and is not a folder")
    # Checked before anything is written, so a refused save leaves no trace.
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"output folder {out} already exists and is not empty; pass --overwrite to replace it")
    return out


def save_hybrid(model, out_dir, *, tokenizer=None, generation_config=None, provenance: dict | None = None,
                overwrite: bool = False, max_shard_size="2GB") -> Path:
    """Write `model` as a self-contained checkpoint folder at `out_dir` (atomically); return its path.

    `provenance` describes where the model came from; recognised keys: teacher, teacher_kind, hub_id
    (becomes the card's base_model), sha256, license, stage. Other keys are recorded as given.
    """
    config = model.config
    if getattr(config, "model_type", None) != configuration_hybrid.HybridConfig.model_type:
        raise ExportError(f"save_hybrid needs a hybridserve model, got model_type {getattr(config, 'model_type', None)!r}")
    out = check_output_dir(out_dir, overwrite)
    sources = _source_paths()
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise ExportError(f"hybridserve's source files are missing from the installation: {', '.join(missing)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: the final rename stays on one filesystem and so is atomic.
    tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(out)}{os.getpid()}-", dir=out.parent))
    _ACTIVE.add(tmp)
    aside = None
    try:
        kwargs = {"max_shard_size": max_shard_size}
        # transformers 5 always writes safetensors and dropped the flag; pass it only where it exists
        if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
            kwargs["safe_serialization"] = True
        model.save_pretrained(tmp, **kwargs)
        _write_config(tmp)
        for name, src in sources.items():
            shutil.copyfile(src, tmp / name)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _write_generation_config(tmp, config, generation_config)
        prov = _provenance(provenance)
        summary = memory_summary(config)
        _write_model_card(tmp, model, config, prov, summary, out.name)
        _write_manifest(tmp, config, prov, summary)
        _fsync_tree(tmp)

        if out.exists():
            if any(out.iterdir()) and not overwrite:  # something appeared while we were writing
                raise ExportError(f"output folder {out} already exists and is not empty; pass --overwrite to replace it")
            # Move the old folder aside (inside our temp namespace, so a crash here is recoverable by
            # _clean_stale), put the new one in place, and only then delete the old one.
            aside = tmp.with_name(tmp.name + ".old")
            os.replace(out, aside)
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException as e:  # KeyboardInterrupt too: never leave a half-written or missing out_dir
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None and not out.exists():
            os.replace(aside, out)  # the new folder never made it: put the old one back
        if isinstance(e, OSError):  # disk full, permissions: an export problem, not a bug
            raise ExportError(f"could not write the checkpoint {out}: {e}") from e
        raise
    finally:
        _ACTIVE.discard(tmp)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------------------
# Verifying and loading
# ----------------------------------------------------------------------------------------------------------


_MAX_HEADER = 100_000_000  # safetensors' own limit; also stops a garbage length from reading gigabytes


def _check_safetensors(path: Path) -> set[str]:
    """Raise ExportError unless `path` is a complete safetensors file; return its tensor names.

    safetensors layout: 8-byte little-endian header length N, N bytes of JSON header, then the data.
    The file must end exactly where the last tensor ends, which is what catches truncation. safe_open
    checks that too, but says only "file not fully covered"; checking first lets the message say why.
    """
    from safetensors import safe_open

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, _MAX_HEADER):
                raise ValueError(f"header length {n} is impossible for a {size}-byte file")
            header = json.loads(f.read(n))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        expected = 8 + n + max(ends, default=0)
        if size != expected:
            raise ValueError(f"file is {size} bytes but its header describes {expected} (truncated or padded)")
        with safe_open(str(path), framework="pt") as st:
            names = set(st.keys())
            for name in names:  # every tensor's metadata, without reading the data
                st.get_slice(name).get_shape()
    except Exception as e:  # json, struct, KeyError and safetensors' own errors alike
        raise ExportError(f"weights file {path.name} in {path.parent} is corrupt: {e}") from e
    return names


def verify_checkpoint(path) -> Path:
    """Check that `path` is a complete hybridserve checkpoint; raise ExportError naming the first problem."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ExportError(f"checkpoint {root} does not exist")
    if not root.is_dir():
        raise ExportError(f"checkpoint {root} is not a folder")
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise ExportError(f"checkpoint {root} has no config.json")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"config.json in {root} is not readable JSON: {e}") from e
    if not isinstance(cfg, dict) or cfg.get("model_type") != configuration_hybrid.HybridConfig.model_type:
        got = cfg.get("model_type") if isinstance(cfg, dict) else None
        raise ExportError(f"checkpoint {root} is not a hybridserve model (config.json model_type is {got!r})")
    try:
        configuration_hybrid.HybridConfig.from_dict(cfg)
    except Exception as e:
        raise ExportError(f"config.json in {root} does not describe a valid hybrid: {e}") from e

    index_path = root / "model.safetensors.index.json"
    expected: dict[str, str] = {}  # tensor -> shard, from the index
    if index_path.is_file():
        try:
            expected = dict(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{index_path.name} in {root} is corrupt: {e}") from e
        for shard in sorted(set(expected.values())):
            if not (root / shard).is_file():
                raise ExportError(f"weights shard {shard} listed in {index_path.name} is missing from {root}")
    elif not (root / "model.safetensors").is_file():
        raise ExportError(f"checkpoint {root} has no model.safetensors (nor a model.safetensors.index.json)")
    held: dict[str, set[str]] = {}
    for file in sorted(root.glob("*.safetensors")):
        held[file.name] = _check_safetensors(file)
    for tensor, shard in expected.items():
        if tensor not in held.get(shard, set()):
            raise ExportError(f"weights shard {shard} in {root} lacks tensor {tensor} listed in {index_path.name}")

    missing = [name for name in SOURCE_FILES if not (root / name).is_file()]
    if missing:
        raise ExportError(
            f"checkpoint {root} lacks the model source files {', '.join(missing)}; "
            "it cannot be loaded with trust_remote_code (re-save it with save_hybrid)"
        )
    return root


def load_hybrid(path, dtype=None, device="cpu"):
    """Load a checkpoint with hybridserve's own classes (no trust_remote_code); eval mode."""
    root = verify_checkpoint(path)
    import torch

    kwargs = {}
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ExportError(f"unknown dtype {dtype!r}; use e.g. float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = modeling_hybrid.HybridForCausalLM.from_pretrained(root, **kwargs)
    except Exception as e:
        raise ExportError(f"could not load the checkpoint {root}: {type(e).__name__}: {e}") from e
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------------
# Pushing
# ----------------------------------------------------------------------------------------------------------

# Connection failures by class name, so neither requests nor httpx (or huggingface_hub's httpx fork)
# has to be importable here: each hub release has used a different HTTP client.
_NETWORK_ERRORS = {
    "ConnectionError", "ConnectError", "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutException",
    "NetworkError", "TransportError", "ProxyError", "SSLError", "gaierror", "OfflineModeIsEnabled",
}


def _causes(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _hub_error(e: Exception, repo_id: str) -> ExportError:
    for err in _causes(e):
        status = getattr(getattr(err, "response", None), "status_code", None)
        names = {cls.__name__ for cls in type(err).__mro__}
        if status in (401, 403) or "LocalTokenNotFoundError" in names:
            return ExportError(
                f"not authorised to create or write the Hub repo {repo_id!r}"
                + (f" (HTTP {status})" if status else "")
                + ": set HF_TOKEN to a token with write access or run `hf auth login`"
            )
        if "OfflineModeIsEnabled" in names:
            return ExportError(f"cannot reach the Hugging Face Hub to push {repo_id!r}: HF_HUB_OFFLINE is set (offline?)")
        if names & _NETWORK_ERRORS or isinstance(err, (ConnectionError, TimeoutError)):
            return ExportError(
                f"cannot reach the Hugging Face Hub to push {repo_id!r} ({type(err).__name__}: {err}) (offline?); "
                "check the network connection and try again"
            )
        if "HFValidationError" in names:
            return ExportError(f"invalid Hub repo id {repo_id!r}: {err}")
        if status is not None:
            return ExportError(f"the Hugging Face Hub refused to push {repo_id!r} (HTTP {status}): {err}")
    return ExportError(f"pushing {repo_id!r} to the Hugging Face Hub failed: {type(e).__name__}: {e}")


def push_to_hub(path, repo_id: str, *, token=None, private: bool = False, commit_message: str | None = None) -> str:
    """Verify the checkpoint at `path`, then upload it to the Hub repo `repo_id`; return the repo URL."""
    root = verify_checkpoint(path)
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(root),
            token=token,
            commit_message=commit_message or "Upload hybridserve checkpoint",
        )
    except Exception as e:
        raise _hub_error(e, repo_id) from e
    return str(url)


__all__ = ["ExportError", "SOURCE_FILES", "layer_map", "load_hybrid", "push_to_hub", "save_hybrid", "verify_checkpoint"]
