"""Network architectures (BasicSR style: one module per family, shared `blocks`).

Generator interface (every class with a `conf/net/*.yaml`, one file per class; discriminators:
`conf/discriminator/*.yaml`):

- constructor kwargs include `scale` (2, 3, 4) and `channels` (1, 3);
- `net(lr) -> sr`: LR `[N, C, h, w]` in [0, 1] -> SR `[N, C, s*h, s*w]`, any h, w (odd too);
  this is what evaluation and ONNX export call (deterministic; a VAE uses its prior's mean / z = mu);
- `net.encode(lr)` -> the latent map the SR is decoded from (`VariationalSR.encode` returns
  `(mu, logvar)` instead);
- `net.encode_decode(lr) -> (sr, z)`: SR and its latent map in one pass (what `sparse_ae`'s L1
  activity penalty and `aae`'s latent discriminator need; for VariationalSR, z = mu);
- `net.latent_channels`: channels of z (to build a `LatentDiscriminator`);
- optional `net.init_new_parameters()`: state-dict keys a model file to initialise from
  (`init_from`) may lack, e.g. the variational ResidualAttentionAE's posterior encoder and noise
  injection when it starts from the deterministic one (`gensr.checkpoint.load_init` loads
  everything else strictly);
- variational nets only (`is_variational(net)`): `net.forward_train(lr, generator=None) ->
  (sr, mu, logvar)` with z sampled by reparameterisation (reconstruction + KL); a net with
  `conditional = True` (the variational ResidualAttentionAE) takes `forward_train(lr, hr,
  generator=None)`, its posterior seeing the HR image; and
  `net.sample(lr, generator=g, temperature=1.0, noise=None)` for seeded diverse outputs.

Also `net.scale`, `net.channels`; nets with a global residual keep its upsample in
`net.skip_up` (`blocks.LinearUpsample`, bicubic-initialised, learnable) and zero-initialise the
upsampler's last conv, so an untrained net outputs exactly that interpolation.

Discriminators return raw logits: `VGGDiscriminator` -> `[N, 1]`, `UNetDiscriminator` ->
`[N, 1, H, W]`, `LatentDiscriminator(latent)` -> `[N, 1, h', w']`.
"""
from gensr.archs.ae import ConvAutoencoder
from gensr.archs.ae_res import ResidualAttentionAE
from gensr.archs.discriminators import LatentDiscriminator, UNetDiscriminator, VGGDiscriminator
from gensr.archs.vae import VariationalSR



def is_variational(net) -> bool:
    """Whether `net` can sample (VariationalSR; ResidualAttentionAE only with variational=True)."""
    return callable(getattr(net, "sample", None)) and bool(getattr(net, "variational", True))


__all__ = [
    "ConvAutoencoder",
    "LatentDiscriminator",
    "ResidualAttentionAE",
    "UNetDiscriminator",
    "VGGDiscriminator",
    "VariationalSR",
    "is_variational",
]
