"""The fused ops, one module per op: its readable reference and gradient, its torch.library op (fake impl,
autograd), its fast eager path (plain torch ops, or a small autograd.Function, wherever no Triton kernel runs,
what torch.compile traces there too; eager.py says when), and its public function with the argument checks.

    bce_with_logits   binary cross-entropy on logits          (fastgan::bce_with_logits)
    gan_loss          the D and G losses, R1, WGAN-GP         (fastgan::d_loss, fastgan::g_loss)
    bias_act          bias + activation + gain + clamp        (fastgan::bias_act, fastgan::bias_act_backward)
    batch_norm_act    batch norm + activation                 (fastgan::batch_norm_act, ..._backward)

activations is the activation table every layer reads; arguments the shared argument checks and
computing dtype; backend decides reference vs Triton; the Triton kernels are fastgan.kernels.<op>,
imported when first launched. Users reach these through the faces fastgan.functional, fastgan.losses,
fastgan.ops and fastgan.reference.
"""
