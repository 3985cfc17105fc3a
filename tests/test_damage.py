"""Procedural damage of old prints: exact masks per kind, sizes relative to the photo, seeded;
the detector's training crops sized for detection's working scale; training photo lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from oldphoto.errors import UsageError
from oldphoto.training.damage import DAMAGE_KINDS, Damage, add_damage, draw_damage

ROOT = Path(__file__).resolve().parents[1]
SCALED = ("cracks", "folds", "emulsion")  # sized by the photo's short side
# The 19 Kodak PhotoCD pictures of live1/ (shared/datasets/README.md): never in a training list.
LIVE1_KODAK = {"bikes", "buildings", "caps", "house", "lighthouse2", "ocean", "paintedhouse", "parrots", "plane", "rapids",
               "sailing1", "sailing4", "stream", "lighthouse3", "sailing2", "sailing3", "statue", "woman", "womanhat"}


def _photo(h: int, w: int, seed: int = 7) -> np.ndarray:
    """Mid-grey with texture, so that light and dark damage both change every pixel they touch."""
    rng = np.random.default_rng(seed)
    return np.clip(128 + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _dark_share(damage: Damage, photos: int = 40) -> float:
    """The share of mid-grey photos whose damaged pixels came out darker than the grey."""
    dark = 0
    for s in range(photos):
        out, mask = add_damage(np.full((64, 64, 3), 128, np.uint8), np.random.default_rng(s), damage)
        dark += int(out[mask > 0].mean() < 128)
    return dark / photos


def _only(kind: str) -> Damage:
    return Damage(kinds=(kind,), p_kind={kind: 1.0})


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_each_kind_marks_exactly_the_pixels_it_changes(kind: str) -> None:
    photo = _photo(120, 160)
    for seed in range(12):
        out, mask = add_damage(photo, np.random.default_rng(seed), _only(kind))
        assert out.dtype == np.uint8 and out.shape == photo.shape and set(np.unique(mask)) <= {0, 255}
        assert mask.any(), (kind, seed)
        assert np.array_equal(np.any(out != photo, axis=2), mask > 0), (kind, seed)


def test_pixels_the_damage_would_leave_alone_are_pushed_so_the_mask_stays_exact() -> None:
    white = np.full((96, 96, 3), 255, np.uint8)  # paper-white cracks and flakes on white sky
    for kind in DAMAGE_KINDS:
        for seed in range(4):
            out, mask = add_damage(white, np.random.default_rng(seed), _only(kind))
            assert np.array_equal(np.any(out != white, axis=2), mask > 0), (kind, seed)


def test_mixed_damage_masks_are_the_union_of_the_kinds() -> None:
    photo = _photo(128, 128)
    for seed in range(4):
        damaged, kinds = draw_damage(photo, np.random.default_rng(seed), Damage())
        _, mask = add_damage(photo, np.random.default_rng(seed), Damage())
        assert set(kinds) <= set(DAMAGE_KINDS) and kinds
        assert np.array_equal(np.logical_or.reduce(list(kinds.values())), mask > 0)


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_damage_is_a_function_of_the_seed(kind: str) -> None:
    photo = _photo(100, 140)
    a = add_damage(photo, np.random.default_rng(11), _only(kind))
    b = add_damage(photo, np.random.default_rng(11), _only(kind))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = add_damage(photo, np.random.default_rng(12), _only(kind))
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("kind", SCALED)
def test_cracks_folds_and_emulsion_loss_scale_with_the_photo(kind: str) -> None:
    """The same seed on a photo twice as large covers the same share of it (widths, lengths and
    flakes are fractions of the short side); absolute widths would halve the share."""
    shares = []
    for seed in range(8):
        small = add_damage(_photo(200, 300), np.random.default_rng(seed), _only(kind))[1]
        large = add_damage(_photo(400, 600), np.random.default_rng(seed), _only(kind))[1]
        shares.append(((large > 0).mean(), (small > 0).mean()))
    large_share, small_share = np.sum(shares, axis=0)
    assert 0.8 < large_share / small_share < 1.25, shares


def test_thin_scratches_keep_their_absolute_width() -> None:
    shares = []
    for seed in range(8):
        small = add_damage(_photo(160, 160), np.random.default_rng(seed), _only("scratches"))[1]
        large = add_damage(_photo(320, 320), np.random.default_rng(seed), _only("scratches"))[1]
        shares.append(((large > 0).mean(), (small > 0).mean()))
    large_share, small_share = np.sum(shares, axis=0)
    assert 0.4 < large_share / small_share < 0.65, shares  # twice as long over four times the area


def test_a_crack_is_as_wide_as_the_recipe_says() -> None:
    """Area over length of a single unbranched crack: between the narrowest and widest the
    recipe allows (tapering ends and jagged edges included), at two photo sizes."""
    for side in (256, 512):
        for seed in range(6):
            damage = Damage(kinds=("cracks",), p_kind={"cracks": 1.0}, crack_width=(0.02, 0.02))
            mask = add_damage(_photo(side, side), np.random.default_rng(seed), damage)[1] > 0
            rows, cols = np.nonzero(mask)
            extent = max(np.ptp(rows), np.ptp(cols)) + 1
            assert mask.sum() / extent < 0.02 * side * 3  # never a blob: width well under 3× the recipe's
    wide = [add_damage(_photo(512, 512), np.random.default_rng(s), _only("cracks"))[1] > 0 for s in range(6)]
    thin = [add_damage(_photo(512, 512), np.random.default_rng(s), _only("scratches"))[1] > 0 for s in range(6)]
    assert np.mean([m.mean() for m in wide]) > 1.5 * np.mean([m.mean() for m in thin])


def test_short_cracks_when_the_recipe_asks_for_them() -> None:
    """``crack_length`` bounds a crack's length as a share of the short side: stubby cracks like
    scratched/a's big one (about 0.11) cover a fraction of the area the default 0.25-1 draws."""
    def share(length: tuple[float, float]) -> float:
        damage = Damage(kinds=("cracks",), p_kind={"cracks": 1.0}, crack_width=(0.01, 0.01), crack_length=length)
        return float(np.mean([(add_damage(_photo(256, 256), np.random.default_rng(s), damage)[1] > 0).mean() for s in range(12)]))

    default, short = share(Damage().crack_length), share((0.08, 0.12))
    assert Damage().crack_length == (0.25, 1.0)  # what every run before 5 Dec 2026 drew
    assert short < 0.35 * default, (short, default)  # mean length 0.1 against 0.625


def test_the_detector_stage_trains_on_its_shortest_crack_and_validates_on_the_default() -> None:
    import torch

    from oldphoto.training.stages.config import TrainConfig
    from oldphoto.training.stages.detector import DetectorStage

    stage = DetectorStage(TrainConfig(stage="detector", out=Path("unused"), crack_min=0.08), torch.device("cpu"))
    assert stage.train_damage.crack_length == (0.08, 1.0)
    assert stage.damage == Damage()


def test_dark_strokes_when_the_recipe_asks_for_them() -> None:
    """``stroke_light`` is the chance that a photo's scratches (and its dust) are light: the default
    draws exactly what every run before 5 Dec 2026 drew, and the detector stage's ``dark_strokes``
    turns it around, which the benchmark (the default ``Damage``) does not see."""
    import torch

    from oldphoto.training.stages.config import TrainConfig
    from oldphoto.training.stages.detector import DetectorStage

    thin = {"kinds": ("scratches",), "p_kind": {"scratches": 1.0}}
    default = Damage(**thin)
    assert default.stroke_light == 0.75
    for s in range(5):  # the same bytes as an explicit 0.75
        a = add_damage(_photo(96, 96), np.random.default_rng(s), default)
        b = add_damage(_photo(96, 96), np.random.default_rng(s), Damage(**thin, stroke_light=0.75))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert 0.1 <= _dark_share(default) <= 0.4
    assert _dark_share(Damage(**thin, stroke_light=0.0)) == 1.0
    assert _dark_share(Damage(**thin, stroke_light=1.0)) == 0.0
    stage = DetectorStage(TrainConfig(stage="detector", out=Path("unused"), dark_strokes=0.5), torch.device("cpu"))
    assert stage.train_damage.stroke_light == 0.5 and stage.damage == Damage()
    assert DetectorStage(TrainConfig(stage="detector", out=Path("unused")), torch.device("cpu")).train_damage.stroke_light == 0.75


def test_the_detector_mask_can_leave_out_invisible_damage() -> None:
    """``min_change`` drops damaged pixels whose grey level moved less than that, once the crop is
    degraded (a dark stroke over a black area); at 0 the sampler draws exactly what it drew before."""
    from oldphoto.training.data import Sampler

    dark = Damage(kinds=("scratches",), p_kind={"scratches": 1.0}, stroke_light=0.0)
    half = np.concatenate([np.zeros((160, 80, 3), np.uint8), np.full((160, 80, 3), 200, np.uint8)], axis=1)

    def batch(**kw: float):
        return Sampler([half], crop=64, damage=dark, rng=np.random.default_rng(3)).detection(16, p_damage=1.0, p_rescan=0.5, **kw)

    plain, off, visible = batch(), batch(min_change=0.0), batch(min_change=12.0)
    assert torch.equal(plain.x, off.x) and torch.equal(plain.mask, off.mask)
    assert torch.equal(plain.x, visible.x)  # the same crops; only the mask differs
    assert bool((visible.mask <= plain.mask).all()) and float(visible.mask.sum()) < float(plain.mask.sum())
    x = (plain.x + 1) * 127.5  # grey levels
    kept, dropped = visible.mask > 0, (plain.mask > 0) & (visible.mask == 0)
    assert float(x[dropped].mean()) < 40 < float(x[kept].mean())  # what goes is the dark stroke over black
    assert float(batch(min_change=255.0).mask.sum()) == 0.0


def test_decoys_are_white_objects_left_out_of_the_mask() -> None:
    """White shapes painted into the scene (collars, bows) change the photo but never the mask,
    and a sampler without them draws exactly what it drew before."""
    from oldphoto.training.damage import draw_decoys
    from oldphoto.training.data import Sampler

    photo = _photo(96, 96)
    out = draw_decoys(photo, np.random.default_rng(0))
    changed = np.any(out != photo, axis=2)
    assert out.dtype == np.uint8 and 0.003 < changed.mean() < 0.5
    assert out[changed].mean() > photo[changed].mean() + 40  # bright objects
    clean = [_photo(160, 160, s) for s in range(3)]

    def batch(**kw: float):
        return Sampler(clean, crop=64, damage=_only("emulsion"), rng=np.random.default_rng(5)).detection(8, **kw)

    plain, off = batch(p_damage=0.0), batch(p_damage=0.0, p_decoy=0.0)
    assert torch.equal(plain.x, off.x)  # 0 is off: the same draws as before
    decoyed = batch(p_damage=0.0, p_decoy=1.0)
    assert not torch.equal(plain.x, decoyed.x) and float(decoyed.mask.sum()) == 0.0


def test_dark_decoys_are_black_garments_left_out_of_the_mask() -> None:
    """Black, knitted shapes (a black top) darken the scene but never enter the mask, and a sampler
    without them draws exactly what it drew before."""
    from oldphoto.training.damage import draw_decoys
    from oldphoto.training.data import Sampler

    photo = np.full((96, 96, 3), 150, np.uint8)
    out = draw_decoys(photo, np.random.default_rng(0), dark=True)
    changed = np.any(out != photo, axis=2)
    assert 0.003 < changed.mean() < 0.9
    assert out[changed].mean() < 150 - 60  # dark objects
    assert out[changed].astype(float).std() > 3  # textured, not flat
    clean = [_photo(160, 160, s) for s in range(3)]

    def batch(**kw: float):
        return Sampler(clean, crop=64, damage=_only("emulsion"), rng=np.random.default_rng(5)).detection(8, **kw)

    plain, off = batch(p_damage=0.0), batch(p_damage=0.0, p_dark_decoy=0.0)
    assert torch.equal(plain.x, off.x)
    decoyed = batch(p_damage=0.0, p_dark_decoy=1.0)
    assert not torch.equal(plain.x, decoyed.x) and float(decoyed.mask.sum()) == 0.0


def test_detector_crops_are_damaged_at_the_working_scale() -> None:
    """A 64 px crop drawn for the detector is a quarter of a 256 px photo: its cracks are as wide
    as a 256 px photo's, not as a 64 px one's."""
    from oldphoto.training.data import Sampler

    clean = [_photo(200, 200, s) for s in range(3)]
    sampler = Sampler(clean, crop=64, damage=_only("emulsion"), rng=np.random.default_rng(0))
    batch = sampler.detection(24, rescale=1.0, p_damage=1.0)
    crop_share = float(batch.mask.mean())
    photo_share = np.mean([(add_damage(_photo(256, 256), np.random.default_rng(s), _only("emulsion"))[1] > 0).mean() for s in range(24)])
    small_share = np.mean([(add_damage(_photo(64, 64), np.random.default_rng(s), _only("emulsion"))[1] > 0).mean() for s in range(24)])
    # Flakes sized for 256 px cover 16× the share of a 64 px crop that they cover of a 256 px photo
    # (clipped at the crop's edge); flakes sized for the crop would cover the photo's share.
    assert crop_share > 3 * photo_share and crop_share > 3 * small_share, (crop_share, photo_share, small_share)


def test_a_txt_list_trains_on_part_of_a_folder(tmp_path: Path) -> None:
    from PIL import Image

    from oldphoto.training.data import list_photos, load_photos

    (tmp_path / "photos").mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(_photo(16, 16)).save(tmp_path / "photos" / f"{name}.png")
    listing = tmp_path / "lists" / "some.txt"
    listing.parent.mkdir()
    listing.write_text("# not b\n../photos/a.png\n\n../photos/c.png  # the last\n")
    assert [p.name for p in list_photos(listing)] == ["a.png", "c.png"]
    assert len(load_photos([listing])[0]) == 2
    listing.write_text("../photos/a.png\n../photos/gone.png\n")
    with pytest.raises(UsageError, match=r"some.txt:2: ../photos/gone.png: no such photo"):
        list_photos(listing)
    listing.write_text("# nothing\n")
    with pytest.raises(UsageError, match="lists no photos"):
        list_photos(listing)
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        list_photos(tmp_path / "notes.md")


def test_the_live1_list_leaves_out_every_kodak_picture() -> None:
    listing = ROOT / "weights" / "data" / "live1-without-kodak.txt"
    names = [line.split("#")[0].strip() for line in listing.read_text().splitlines()]
    names = [n for n in names if n]
    stems = {Path(n).stem for n in names}
    assert len(names) == 10 and all(n.startswith("../../../shared/datasets/clean/live1/") for n in names)
    assert not stems & LIVE1_KODAK and len(stems | LIVE1_KODAK) == 29


def test_a_card_can_grow_the_detected_mask_and_the_published_card_does_not() -> None:
    import json

    import torch

    from oldphoto.detection import mask_from_probability, probability_to_mask

    prob = torch.zeros(1, 1, 12, 16)
    prob[0, 0, 5, 3:12] = 0.45
    prob[0, 0, 9, 2] = 0.39
    plain = np.asarray(mask_from_probability(prob, {"threshold": 0.4})) > 0
    assert np.array_equal(plain, np.asarray(probability_to_mask(prob, 0.4)) > 0) and plain.sum() == 9
    grown = np.asarray(mask_from_probability(prob, {"threshold": 0.4, "dilation": 1})) > 0
    assert grown.sum() == 3 * 11 and grown[4:7, 2:13].all()
    assert (np.asarray(mask_from_probability(prob, {"threshold": 0.35})) > 0).sum() == 10
    published = json.loads((ROOT / "oldphoto" / "weights" / "cards" / "detector.json").read_text())["pipeline"]
    assert "dilation" not in published  # the published masks stay the published ones (tests/test_parity.py)


def test_dust_can_be_drawn_dark_apart_from_the_scratches() -> None:
    """``dust_light`` overrides ``stroke_light`` for dust alone (unset: the very same draws), and the
    detector stage's ``dark_dust`` and ``p_dust`` set it and dust's chance, leaving the benchmark's
    ``Damage`` alone."""
    import torch

    from oldphoto.training.stages.config import TrainConfig
    from oldphoto.training.stages.detector import DetectorStage

    both = {"kinds": ("scratches", "dust"), "p_kind": {"scratches": 1.0, "dust": 1.0}}
    for s in range(5):
        a = add_damage(_photo(96, 96), np.random.default_rng(s), Damage(**both))
        b = add_damage(_photo(96, 96), np.random.default_rng(s), Damage(**both, dust_light=None))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])

    def dark(kind: str, **kw: float) -> float:
        return _dark_share(Damage(kinds=(kind,), p_kind={kind: 1.0}, **kw), photos=30)

    assert dark("dust", stroke_light=1.0, dust_light=0.0) == 1.0
    assert dark("dust", stroke_light=0.0, dust_light=1.0) == 0.0
    assert dark("scratches", stroke_light=1.0, dust_light=0.0) == 0.0
    stage = DetectorStage(TrainConfig(stage="detector", out=Path("unused"), dark_strokes=0.4, dark_dust=0.7, p_dust=0.9), torch.device("cpu"))
    assert stage.train_damage.stroke_light == 0.6 and abs(stage.train_damage.dust_light - 0.3) < 1e-12
    assert stage.train_damage.p_kind["dust"] == 0.9 and stage.train_damage.p_kind["cracks"] == Damage().p_kind["cracks"]
    plain = DetectorStage(TrainConfig(stage="detector", out=Path("unused")), torch.device("cpu")).train_damage
    assert plain.dust_light is None and plain.p_kind == Damage().p_kind
