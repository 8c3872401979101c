"""Every loss term trains the generator, and the discriminator step trains D.

The research code computed perceptual and adversarial terms under torch.no_grad() and its
discriminator loss sat at 1.0: these tests fail on exactly those bugs.
"""
import pytest
import torch
from torch import nn

from dist_train.backends.ddp_backend import DDPBackend
from dist_train.config import load_config
from dist_train.distributed import DistEnv
from dist_train.gan_step import StepOutcome, discriminator_step, generator_step
from dist_train.losses import GeneratorLoss, discriminator_loss, generator_adversarial_loss
from dist_train.models import PatchDiscriminator, SRResNet
from dist_train.perceptual import GrayVGGFeatures, VGGWeightsMissing, build_vgg19_features, vgg19_layer_names
from dist_train.precision import Precision


def tiny_feature_net() -> GrayVGGFeatures:
    """A two-conv stand-in for VGG19 (the real weights are not on CI machines)."""
    torch.manual_seed(1)
    return GrayVGGFeatures(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)))


def generator_with_live_tail() -> SRResNet:
    """A generator whose last layer is not zero.

    With the zero-initialised tail (untrained G == bicubic) the gradient reaching every earlier
    layer is exactly zero by construction; after the first update it is not, which is the state
    these tests need.
    """
    torch.manual_seed(0)
    generator = SRResNet(scale=4, features=4, blocks=1)
    nn.init.normal_(generator.tail.weight, std=0.05)
    return generator


def _gradless_params(module: nn.Module) -> list[str]:
    return [name for name, p in module.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]


@pytest.mark.parametrize("term", ["pixel", "perceptual", "adversarial_bce", "adversarial_ragan", "tv"])
def test_each_loss_term_alone_gives_every_generator_parameter_a_gradient(term):
    generator, discriminator = generator_with_live_tail(), PatchDiscriminator(features=4)
    weights = {"pixel_weight": 0.0, "perceptual_weight": 0.0, "adversarial_weight": 0.0, "tv_weight": 0.0}
    kind = "ragan" if term.endswith("ragan") else "bce"
    weights[("adversarial" if term.startswith("adversarial") else term) + "_weight"] = 1.0
    cfg = load_config(None, [f"loss.{k}={v}" for k, v in weights.items()] + [f"loss.adversarial={kind}"])
    objective = GeneratorLoss(cfg.loss, tiny_feature_net())
    lr, hr = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 32, 32)
    sr = generator(lr)
    fake_logits, real_logits = discriminator(sr), discriminator(hr)
    total, terms = objective(sr, hr, fake_logits, real_logits)
    assert total.requires_grad and total.item() > 0
    total.backward()
    assert _gradless_params(generator) == []


def test_psnr_phase_uses_pixel_loss_only():
    cfg = load_config(None, ["loss.perceptual_weight=1.0"])
    _, terms = GeneratorLoss(cfg.loss, tiny_feature_net())(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    assert set(terms) == {"pixel"}


def test_adversarial_losses_point_the_right_way():
    """G's loss falls as D calls SR real; D's falls as it separates real from fake."""
    confident_real, confident_fake = torch.full((4, 1), 5.0), torch.full((4, 1), -5.0)
    assert generator_adversarial_loss(confident_real, None) < generator_adversarial_loss(confident_fake, None)
    assert discriminator_loss(confident_real, confident_fake) < 0.01
    assert discriminator_loss(confident_fake, confident_real) > 4.0


def test_discriminator_step_changes_discriminator_and_lowers_its_loss():
    """A D whose loss never moves (the research code's 1.0) would fail here."""
    torch.manual_seed(0)
    cfg = load_config(None, ["model.features=4", "model.blocks=1", "model.d_features=4", "optim.lr_d=0.001"])
    backend = DDPBackend(cfg, DistEnv(0, 0, 1, torch.device("cpu")), Precision("fp32", torch.device("cpu")))
    backend.wrap(SRResNet(4, 4, 1), PatchDiscriminator(4))
    hr = torch.rand(4, 1, 32, 32)
    sr = 0.25 * hr  # a much darker "SR": separable within a few steps
    before = [p.detach().clone() for p in backend.module("d").parameters()]
    losses = []
    for _ in range(30):
        outcome = StepOutcome()
        discriminator_step(backend, "bce", sr, hr, outcome)
        losses.append(outcome.losses["d_loss"])
    after = list(backend.module("d").parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after))
    assert losses[-1] < losses[0] - 0.1, losses


def test_generator_step_leaves_discriminator_untouched():
    """D is frozen during the G update: no gradient accumulates in it."""
    cfg = load_config(None, ["model.features=4", "model.blocks=1", "model.d_features=4", "loss.perceptual_weight=0"])
    backend = DDPBackend(cfg, DistEnv(0, 0, 1, torch.device("cpu")), Precision("fp32", torch.device("cpu")))
    backend.wrap(generator_with_live_tail(), PatchDiscriminator(4))
    before = [p.detach().clone() for p in backend.module("d").parameters()]
    generator_step(backend, GeneratorLoss(cfg.loss), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 32, 32), True,
                   StepOutcome())
    for b, p in zip(before, backend.module("d").parameters()):
        assert torch.equal(b, p) and p.grad is None and p.requires_grad


def test_missing_vgg_weights_give_a_clear_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vgg19.pth"
    with pytest.raises(VGGWeightsMissing) as error:
        build_vgg19_features("relu5_4", missing)
    message = str(error.value)
    assert str(missing) in message and "\n" not in message


def test_vgg_layer_names_follow_torchvision_order():
    names = vgg19_layer_names()
    assert names[:4] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2"]
    assert names.index("relu5_4") == 35 and names[-1] == "pool5"


def _random_vgg19_features_file(path, layer: str = "relu2_2"):
    """A randomly initialised VGG19's ``features.*`` up to ``layer``, saved as torchvision names them."""
    import torchvision

    torch.manual_seed(2)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])[: vgg19_layer_names().index(layer) + 1]
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return features


def test_vgg_features_load_from_a_weights_file(tmp_path):
    """The loading path with a random VGG19 file: the features computed are the file's, not random ones."""
    path = tmp_path / "vgg19_random.pth"
    reference = _random_vgg19_features_file(path)
    net = build_vgg19_features("relu2_2", path)
    gray = torch.rand(1, 1, 16, 16)
    rgb = (gray.expand(-1, 3, -1, -1) - net.mean) / net.std
    torch.testing.assert_close(net(gray), reference(rgb))
    assert not any(p.requires_grad for p in net.parameters())


def test_a_file_that_is_not_vgg19_is_named_in_one_line(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(VGGWeightsMissing) as error:
        build_vgg19_features("relu2_2", path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_absent_hub_file_is_downloaded_by_torchvision_once_said_in_one_line(tmp_path, monkeypatch, capsys):
    """No weights in the hub cache and a network: torch.hub fetches torchvision's file into the cache."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    fetched = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        fetched.append((url, dst, hash_prefix, progress))
        _random_vgg19_features_file(dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    net = build_vgg19_features("relu2_2")
    expected = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert fetched == [("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", str(expected), "dcbb9e9d", False)]
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and str(expected) in said[0] and "download" in said[0]
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 128, 4, 4)  # relu2_2 comes after pool1
    build_vgg19_features("relu2_2")  # now cached: no second download
    assert len(fetched) == 1


def test_offline_without_weights_is_one_line_saying_where_to_put_the_file(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(VGGWeightsMissing) as error:
        build_vgg19_features("relu5_4")
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message and "\n" not in message
    assert "d_features" in message  # the way out that needs no weights


def test_a_given_weights_path_is_never_replaced_by_a_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(VGGWeightsMissing):
        build_vgg19_features("relu5_4", tmp_path / "mine.pth")


def test_perceptual_choice_decides_which_network_the_objective_needs():
    """vgg needs a feature network; d_features and none need none (and none has no term)."""
    with pytest.raises(ValueError):
        GeneratorLoss(load_config(None, ["loss.perceptual=vgg"]).loss)
    for choice in ("d_features", "none"):
        GeneratorLoss(load_config(None, [f"loss.perceptual={choice}"]).loss)
    objective = GeneratorLoss(load_config(None, ["loss.perceptual=none"]).loss, tiny_feature_net())
    _, terms = objective(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), torch.zeros(1, 1))
    assert "perceptual" not in terms
