"""A model's card: what it can render and how to sample it, readable without torch.

Validation and planning run before any model is loaded (and before torch is imported), so
everything they need about a model lives here, in `model.json` beside the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cinecli.screenplay.format import FilmFormat, TemporalGrid

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"


@dataclass(frozen=True)
class ModelCard:
    """What a model can render and how to sample it; stored as `model.json` beside the weights."""

    name: str = "default"
    preset: str = "tiny"
    width: int = 192
    height: int = 128
    fps: int = 12
    chunk_frames: int = 3
    steps: int = 4
    shift: float = 5.0
    sampler: str = "few-step"
    guidance: float = 1.0
    temporal_stride: int = 4
    spatial_stride: int = 8
    text_layers: int = 2
    vocabulary: tuple[str, ...] = field(default_factory=tuple)

    def film_format(self) -> FilmFormat:
        multiple = self.spatial_stride * 2  # autoencoder stride × transformer patch
        return FilmFormat(
            model=self.name,
            grid=TemporalGrid(stride=self.temporal_stride, first_alone=False),
            chunk_frames=self.chunk_frames,
            spatial_multiple=multiple,
            resolutions=((self.width, self.height),),
            fps=(self.fps,),
            default_resolution=(self.width, self.height),
            default_fps=self.fps,
            default_steps=self.steps,
            max_pixels=self.width * self.height,
            vocabulary=frozenset(self.vocabulary) or None,
        )

    @staticmethod
    def read(path: Path) -> "ModelCard":
        data = json.loads(path.read_text(encoding="utf-8"))
        data["vocabulary"] = tuple(data.get("vocabulary", ()))
        return ModelCard(**data)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def default_card() -> ModelCard:
    """The default model's card: the shipped one, or the built-in shape before training."""
    path = DEFAULT_DIR / "model.json"
    if path.exists():
        return ModelCard.read(path)
    from cinecli.world.vocabulary import VOCABULARY

    return ModelCard(vocabulary=tuple(sorted(VOCABULARY)))


