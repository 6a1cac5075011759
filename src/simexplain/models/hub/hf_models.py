"""``hf:ORG/NAME[@REVISION]``: transformers vision encoders by their hub names.

The repository is found in the Hugging Face cache (fetched first unless ``HF_HUB_OFFLINE`` is set), its
``config.json`` names the family (:mod:`.hf_families`), and the weights load from ``model.safetensors``
(sharded or not) only: a repository with pickle weights alone is refused, and custom code is never run
(``trust_remote_code`` stays off). The preprocessing is the repository's own image processor
(:mod:`.hf_preprocessing`). :func:`load_checkpoint` loads a whole checkpoint (CLIP's and SigLIP's text tower
and logit scale included) for any caller that needs more than the image tower.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ...errors import SimexplainError
from ...pair import PairModel, TokenLayout
from ...preprocessing import Preprocessing
from .files import download_command, hub_file, not_cached, offline, provenance, require, revision_of
from .hf_families import EMBEDDINGS, FAMILIES, GENERIC, Family
from .hf_preprocessing import FALLBACK, at_size, from_processor
from .text_towers import check_pair_kind, hf_image_text


@dataclass(frozen=True)
class HubRef:
    """A hub name: ``ORG/NAME`` and an optional revision (branch, tag or commit).

    Example:
        >>> HubRef.parse("facebook/dinov2-small@main")
        HubRef(repo='facebook/dinov2-small', revision='main')
    """

    repo: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> HubRef:
        repo, _, revision = text.partition("@")
        org, _, name = repo.partition("/")
        if not org or not name or "/" in name or ("@" in text and not revision):
            raise SimexplainError(f"hf:{text}: use hf:ORG/NAME or hf:ORG/NAME@REVISION")
        return cls(repo, revision or None)

    @property
    def name(self) -> str:
        return f"hf:{self.repo}" + (f"@{self.revision}" if self.revision else "")


@dataclass
class HubSource:
    """A hub repository found in the cache: its snapshot folder, commit, config and family."""

    ref: HubRef
    folder: Path
    commit: str | None
    config: object
    family: Family

    @property
    def what(self) -> str:
        return self.ref.name

    def weights(self) -> list[Path]:
        """The safetensors weight files (every shard), fetched unless offline; pickles are refused."""
        single = self._file("model.safetensors")
        if single:
            return [single]
        index = self._file("model.safetensors.index.json")
        if index:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [hub_file(self.what, self.ref.repo, shard, self.commit) for shard in shards]
        for pickle in ("pytorch_model.bin", "pytorch_model.bin.index.json"):
            if self._file(pickle):
                raise SimexplainError(
                    f"{self.what}: the repository has only pickle weights ({pickle}); simexplain loads "
                    "safetensors only (a pickle can run code): pick a revision with model.safetensors"
                )
        if offline():
            raise not_cached(self.what, download_command(self.ref.repo, self.ref.revision))
        raise SimexplainError(f"{self.what}: the repository has no model.safetensors")

    def _file(self, name: str) -> Path | None:
        return hub_file(self.what, self.ref.repo, name, self.commit, required=False)

    def preprocessing(self, input_size: int | tuple[int, int] | None = None) -> Preprocessing:
        """The repository's image processor as :class:`Preprocessing` (at ``input_size`` if given)."""
        found = self._file("preprocessor_config.json")
        if found is None:
            p = FALLBACK
        else:
            transformers = require("transformers", self.what)
            with _one_line(self.what, "its image processor"):
                processor = transformers.AutoImageProcessor.from_pretrained(
                    found.parent, backend="torchvision", trust_remote_code=False
                )
            p = from_processor(processor, self.what)
        return at_size(p, input_size) if input_size else p


@dataclass
class HubCheckpoint:
    """A loaded checkpoint: the transformers model (float32, eval), where it came from and its family."""

    model: nn.Module
    source: HubSource
    provenance: dict
    missing: tuple[str, ...]


def open_source(name: str) -> HubSource:
    """Resolve ``ORG/NAME[@REVISION]`` to its cached snapshot and read its config (no weights yet).

    Example:
        >>> source = open_source("facebook/dinov2-with-registers-small")  # doctest: +SKIP
        >>> source.family.title, source.config.num_register_tokens  # doctest: +SKIP
        ('DINOv2 with registers', 4)
    """
    ref = HubRef.parse(name)
    transformers = require("transformers", ref.name)
    config_file = hub_file(ref.name, ref.repo, "config.json", ref.revision)
    with _one_line(ref.name, "its config (custom code is never run)"):
        config = transformers.AutoConfig.from_pretrained(config_file.parent, trust_remote_code=False)
    family = FAMILIES.get(config.model_type, GENERIC)
    return HubSource(ref, config_file.parent, revision_of(config_file) or ref.revision, config, family)


def load_checkpoint(source: HubSource | str, model_class: str | None = None) -> HubCheckpoint:
    """The whole checkpoint of a hub repository as a transformers model, weights from safetensors only.

    ``model_class`` (a transformers class name) defaults to the family's: the full ``CLIPModel`` or
    ``SiglipModel`` for a two-tower repository. A missing pooler is allowed (ViT classification checkpoints
    have none); any other weight the checkpoint leaves unset is refused in one line.

    Example:
        >>> checkpoint = load_checkpoint("openai/clip-vit-base-patch32")  # doctest: +SKIP
        >>> type(checkpoint.model).__name__, len(checkpoint.provenance["revision"])  # doctest: +SKIP
        ('CLIPModel', 40)
    """
    source = open_source(source) if isinstance(source, str) else source
    transformers = require("transformers", source.what)
    files = source.weights()
    cls = getattr(transformers, model_class or source.family.model_class)
    with _one_line(source.what, f"its weights into {cls.__name__}"), _quiet(transformers):
        model, info = cls.from_pretrained(
            source.folder,
            use_safetensors=True,
            dtype=torch.float32,
            output_loading_info=True,
            trust_remote_code=False,
        )
    missing = tuple(sorted(info.get("missing_keys", ())))
    unset = [key for key in missing if not _is_pooler(key)]
    if unset:
        raise SimexplainError(
            f"{source.what}: the checkpoint leaves {len(unset)} weights of {cls.__name__} unset "
            f"(e.g. {unset[0]}): not a {source.family.title} checkpoint"
        )
    facts = provenance(source.what, files, repository=source.ref.repo, revision=source.commit)
    return HubCheckpoint(model.eval(), source, facts, missing)


class HubImageEncoder(nn.Module):
    """A transformers vision tower as a ``B×3×H×W → B×D`` encoder (:data:`.hf_families.EMBEDDINGS`).

    ``model`` is the tower (``layer=`` names start with ``model.``); ``projection`` maps its pooled output
    (CLIP). Inputs of another size than ``native_size`` interpolate the position embeddings.
    """

    def __init__(
        self,
        model: nn.Module,
        embedding: str,
        *,
        leading_tokens: int = 1,
        projection: nn.Module | None = None,
        position_flag: bool = False,
        native_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.projection, self.embedding = model, projection, embedding
        self.leading_tokens, self.position_flag, self.native_size = leading_tokens, position_flag, native_size

    def forward(self, x: Tensor) -> Tensor:
        resized = self.position_flag and tuple(x.shape[-2:]) != self.native_size
        out = self.model(pixel_values=x, **({"interpolate_pos_encoding": True} if resized else {}))
        if self.embedding == "projected":
            return self.projection(out.pooler_output)
        if self.embedding == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # a CNN's feature map
            return hidden.mean((2, 3))
        if self.embedding == "cls":
            return hidden[:, 0]
        if self.embedding == "mean":
            return hidden.mean(1)
        patches = hidden[:, self.leading_tokens :].mean(1)
        return patches if self.embedding == "mean-patch" else torch.cat([hidden[:, 0], patches], 1)


def hf_model(
    name: str,
    weights: str | None = None,
    *,
    embedding: str | None = None,
    layer: str | None = None,
    input_size: int | tuple[int, int] | None = None,
    preprocessing: Preprocessing | None = None,
    token_layout: TokenLayout | None = None,
    pair: str = "image",
    text_layer: str | None = None,
) -> PairModel:
    """``hf:ORG/NAME[@REVISION]``: the image tower of a transformers model by its hub name.

    ``embedding`` picks what is compared (``simexplain models`` lists each family's; default: the family's
    first), ``layer`` the module the activation methods tap (default: the family's, see docs/models.md),
    ``input_size`` another input size (the repository's resize kept in proportion; position embeddings are
    interpolated). The model's ``provenance`` records the repository, the resolved commit and the weights'
    SHA-256. ``pair="image-text"`` (CLIP, SigLIP) adds the text tower and tokenizer on side 2, with the
    model's own score (docs/image_text.md); ``text_layer`` names the text module its word CAM taps.

    Example:
        >>> import simexplain
        >>> model = simexplain.load_model("hf:facebook/dinov2-small")  # doctest: +SKIP
        >>> model.layer, model.token_layout.patch_size  # doctest: +SKIP
        ('model.encoder.layer.10', 14)
    """
    if weights is not None:
        raise SimexplainError(f"hf:{name}: the weights come from the hub cache; drop weights=/--weights")
    with_text = check_pair_kind(f"hf:{name}", pair)
    source = open_source(name)
    family = source.family
    _check_embedding(source, embedding)
    p = preprocessing or source.preprocessing(input_size)  # read before the weights: a bad one fails first
    checkpoint = load_checkpoint(source)
    embedding = _embedding(checkpoint, embedding)
    whole = checkpoint.model
    tower = whole.get_submodule(family.tower) if family.tower else whole
    layout = token_layout or _layout(family, tower)
    encoder = HubImageEncoder(
        tower,
        embedding,
        leading_tokens=layout.leading_tokens if layout else 0,
        projection=whole.get_submodule(family.projection) if family.projection else None,
        position_flag=family.position_flag,
        native_size=_native_size(tower),
    )
    model = PairModel(
        encoder,
        layer=layer or _default_layer(family, tower, embedding),
        token_layout=layout,
        preprocessing=p,
        name=source.what,
        description=f"{family.title} from the hub ({source.ref.repo} at {source.commit}); "
        f"embedding: {EMBEDDINGS[embedding]}",
    )
    model.provenance = checkpoint.provenance
    return hf_image_text(model, checkpoint, text_layer) if with_text else model


def _check_embedding(source: HubSource, embedding: str | None) -> None:
    offered = source.family.embeddings
    if embedding is not None and embedding not in offered:
        raise SimexplainError(
            f"{source.what} ({source.family.title}) has no embedding {embedding!r}; choose one of "
            f"{', '.join(offered)}"
        )


def _embedding(checkpoint: HubCheckpoint, chosen: str | None) -> str:
    """The embedding asked for, else the family's default; a checkpoint without its pooler (a ViT
    classification checkpoint) compares class tokens by default and refuses the pooler when asked."""
    family = checkpoint.source.family
    embedding = chosen or family.embeddings[0]
    if embedding not in ("pooler", "projected") or not any(_is_pooler(k) for k in checkpoint.missing):
        return embedding
    if chosen is None and "cls" in family.embeddings:
        return "cls"
    raise SimexplainError(f"{checkpoint.source.what}: the checkpoint has no pooler; use embedding='cls'")


def _is_pooler(key: str) -> bool:
    return key.startswith("pooler.") or ".pooler." in key


def _layout(family: Family, tower: nn.Module) -> TokenLayout | None:
    """Class and register tokens and the patch size of a transformer tower (None for a CNN)."""
    config = getattr(tower, "config", None)
    patch = getattr(config, "patch_size", None)
    if family.convolutional or not isinstance(patch, int):
        return None
    registers = int(getattr(config, family.registers, 0) or 0) if family.registers else 0
    if family is GENERIC:
        registers = int(getattr(config, "num_register_tokens", 0) or 0)
    return TokenLayout(patch_size=patch, prefix_tokens=family.class_tokens, register_tokens=registers)


def _default_layer(family: Family, tower: nn.Module, embedding: str) -> str | None:
    """The family's CAM layer: a CNN's last stage; a ViT's last block, or the block before it when the
    embedding reads only the class token (the last block's patch tokens get no gradient then)."""
    names = {name for name, _ in tower.named_modules()}
    found = [path for path in family.blocks if path in names]
    if not found:
        return None
    count = len(tower.get_submodule(found[0]))
    from_class = not family.convolutional and family.reads_class_only(embedding)
    index = count - 2 if count > 1 and from_class else count - 1
    return f"model.{found[0]}.{index}"


def _native_size(tower: nn.Module) -> tuple[int, int] | None:
    size = getattr(getattr(tower, "config", None), "image_size", None)
    if isinstance(size, int):
        return size, size
    return tuple(size) if isinstance(size, (tuple, list)) else None


@contextmanager
def _one_line(what: str, part: str) -> Iterator[None]:
    """What transformers raises while reading a repository, as one line."""
    try:
        yield
    except SimexplainError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise SimexplainError(f"{what}: cannot load {part} ({reason})") from None


@contextmanager
def _quiet(transformers) -> Iterator[None]:
    """transformers' loading report (heads a base model does not use) and progress bars would fill the
    terminal: errors only, restored afterwards."""
    logging = transformers.utils.logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
