"""pgrad.optim against torch's own optimisers and clipping: the same numbers, the same state."""

import copy

import pytest
import torch

from pgrad import optim
from pgrad.networks import ActorCritic
from pgrad.optim import Adam, RMSprop, clip_grad_norm_


def _nets(n: int = 2) -> list[ActorCritic]:
    torch.manual_seed(0)
    net = ActorCritic(4, 2, discrete=True)
    copies = [ActorCritic(4, 2, discrete=True) for _ in range(n - 1)]
    for c in copies:
        c.load_state_dict(net.state_dict())
    return [net, *copies]


def _train(nets, optimizers, steps: int, lrs=None, skip_value_at=()) -> None:
    """The same gradients (a fixed loss on fixed data) through each (net, optimizer) pair; the
    value net gets no gradient at the steps in ``skip_value_at`` (its ``.grad`` stays None)."""
    g = torch.Generator().manual_seed(1)
    for t in range(steps):
        obs = torch.randn(16, 4, generator=g)
        for net, opt in zip(nets, optimizers, strict=True):
            if lrs is not None:
                for group in opt.param_groups:
                    group["lr"] = lrs[t]
            opt.zero_grad(set_to_none=True)
            dist, values = net(obs)
            loss = -dist.log_prob(torch.zeros(16, dtype=torch.long)).mean()
            if t not in skip_value_at:
                loss = loss + values.pow(2).mean()
            loss.backward()
            opt.step()


def _assert_same_weights(a, b) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("eps", [1e-8, 1e-5])
def test_adam_equals_torch_fused_adam_bitwise(eps):
    ours_net, torch_net, plain_net = _nets(3)
    ours = Adam(ours_net.parameters(), lr=1e-3, eps=eps)
    reference = torch.optim.Adam(torch_net.parameters(), lr=1e-3, eps=eps, fused=True)
    plain = torch.optim.Adam(plain_net.parameters(), lr=1e-3, eps=eps, foreach=False)
    lrs = [1e-3 * (1 - t / 30) for t in range(30)]  # a linear schedule, as PPO's
    _train([ours_net, torch_net, plain_net], [ours, reference, plain], 30, lrs, skip_value_at={3, 4})
    _assert_same_weights(ours_net, torch_net)
    for p, q in zip(ours_net.parameters(), plain_net.parameters(), strict=True):  # the per-tensor loop
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for p, q in zip(ours_net.parameters(), torch_net.parameters(), strict=True):
        assert torch.equal(ours.state[p]["step"], reference.state[q]["step"])  # 28 for the value net


def test_rmsprop_equals_torch_rmsprop_bitwise():
    ours_net, torch_net = _nets(2)
    ours = RMSprop(ours_net.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)
    reference = torch.optim.RMSprop(torch_net.parameters(), lr=7e-4, alpha=0.99, eps=1e-5, foreach=True)
    _train([ours_net, torch_net], [ours, reference], 25, [7e-4 * (1 - t / 25) for t in range(25)], {2})
    _assert_same_weights(ours_net, torch_net)


@pytest.mark.parametrize(
    "make, make_torch",
    [
        (lambda ps: Adam(ps, 1e-3), lambda ps: torch.optim.Adam(ps, lr=1.0, fused=True)),
        (lambda ps: RMSprop(ps, 7e-4, 0.99, 1e-5), lambda ps: torch.optim.RMSprop(ps, lr=1.0, foreach=True)),
    ],
)
def test_state_dict_interchangeable_with_torch(make, make_torch):
    """A checkpoint of pgrad's optimizer loads into torch's and the other way round, and both
    continue identically (lr 1.0 is overwritten by the loaded state)."""
    a_net, b_net = _nets(2)
    ours = make(a_net.parameters())
    _train([a_net], [ours], 5)
    b_net.load_state_dict(a_net.state_dict())
    theirs = make_torch(b_net.parameters())
    theirs.load_state_dict(copy.deepcopy(ours.state_dict()))  # (a state_dict shares the tensors)
    _train([a_net, b_net], [ours, theirs], 5)
    _assert_same_weights(a_net, b_net)
    again = make(b_net.parameters())
    again.load_state_dict(copy.deepcopy(theirs.state_dict()))
    _train([a_net, b_net], [ours, again], 3)
    _assert_same_weights(a_net, b_net)


def test_options_pgrad_does_not_use_fall_back_to_torch():
    """amsgrad or weight decay set on a group afterwards: torch's own step runs, so the result
    still equals torch's."""
    a_net, b_net = _nets(2)
    ours = Adam(a_net.parameters(), lr=1e-3)
    reference = torch.optim.Adam(b_net.parameters(), lr=1e-3, fused=True, weight_decay=0.1)
    ours.param_groups[0]["weight_decay"] = 0.1
    _train([a_net, b_net], [ours, reference], 5)
    _assert_same_weights(a_net, b_net)


def test_zero_grad_sets_none_or_zero():
    net = _nets(1)[0]
    opt = Adam(net.parameters(), lr=1e-3)
    _train([net], [opt], 1)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("max_norm", [1e-3, 0.5, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    a_net, b_net = _nets(2)
    obs = torch.randn(32, 4, generator=torch.Generator().manual_seed(2))
    for net in (a_net, b_net):
        dist, values = net(obs)
        (dist.entropy().mean() + values.pow(2).mean()).backward()
    ours = clip_grad_norm_(list(a_net.parameters()), max_norm)
    theirs = torch.nn.utils.clip_grad_norm_(list(b_net.parameters()), max_norm, foreach=False)
    torch.testing.assert_close(ours, theirs)
    for p, q in zip(a_net.parameters(), b_net.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9)


def _train_steps(optimizer_factory, steps=12):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = optimizer_factory(net.parameters())
    x = torch.randn(16, 4)
    for _ in range(steps):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optim.clip_grad_norm_(net.parameters(), 0.1)
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()], optimizer


def _reference(params):
    return torch.optim.Adam(params, lr=1e-2, fused=True)


@pytest.mark.parametrize("how", ["missing", "other-signature"])
def test_adam_falls_back_to_torchs_step_when_the_private_kernel_is_unusable(how, monkeypatch):
    """pyproject promises torch >= 2.3: a build without torch._fused_adam_, or with another
    signature, must give the same numbers through torch's public step."""
    expected, _ = _train_steps(_reference)
    if how == "missing":
        monkeypatch.setattr(optim, "_FUSED_ADAM", None)
    else:
        monkeypatch.setattr(optim, "_FUSED_ADAM", lambda *args, **kwargs: (_ for _ in ()).throw(TypeError("new args")))
    got, optimizer = _train_steps(lambda p: optim.Adam(p, lr=1e-2))
    assert not optimizer.lean
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert all(int(s["step"]) == 12 for s in optimizer.state.values())  # the undone count is not doubled


def test_clipping_norms_and_rmsprop_fall_back_without_foreach_kernels(monkeypatch):
    expected, _ = _train_steps(lambda p: torch.optim.RMSprop(p, lr=1e-2, alpha=0.99, eps=1e-5, foreach=True))
    monkeypatch.setattr(optim, "_FOREACH", False)
    monkeypatch.setattr(optim, "_FOREACH_NORM", None)
    got, optimizer = _train_steps(lambda p: optim.RMSprop(p, lr=1e-2, alpha=0.99, eps=1e-5))
    assert not optimizer.lean
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)  # clip: torch's per-tensor norms
    assert [float(n) for n in optim.norms([torch.ones(4), torch.ones(9)])] == [2.0, 3.0]


def test_soft_update_without_the_foreach_kernel(monkeypatch):
    from pgrad.networks import soft_update

    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = [torch.lerp(p.detach(), q.detach(), 0.3) for p, q in zip(a.parameters(), b.parameters(), strict=True)]
    monkeypatch.delattr(torch, "_foreach_lerp_")
    soft_update(a, b, 0.3)
    assert all(torch.equal(p, e) for p, e in zip(a.parameters(), expected, strict=True))


def test_user_forward_hooks_fire_in_training_and_acting():
    from pgrad.networks import ActorCritic

    net = ActorCritic(3, 2, discrete=True)
    seen = []
    handle = net.policy_net[0].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    net.distribution(torch.zeros(5, 3))
    net.for_acting()(torch.zeros(2, 3))
    assert seen == [torch.Size([5, 64]), torch.Size([2, 64])]
    handle.remove()
    global_seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: global_seen.append(type(m)))
    net.value(torch.zeros(1, 3))
    handle.remove()
    assert torch.nn.Linear in global_seen


@pytest.mark.parametrize("kernel", ["fused", "other-signature"])
def test_step_together_equals_each_optimizers_own_step(kernel, monkeypatch):
    """Many seeds' Adams stepped as one fused call (``--seeds``) take exactly each one's own step,
    the first (which creates the state) included; with a kernel that refuses the arguments, each
    takes its own step through torch's."""
    if kernel == "other-signature":
        monkeypatch.setattr(optim, "_FUSED_ADAM", lambda *args, **kwargs: (_ for _ in ()).throw(TypeError("new args")))
    nets = _nets(6)
    together, alone = [Adam(n.parameters(), lr=1e-3, eps=1e-5) for n in nets[:3]], nets[3:]
    singles = [torch.optim.Adam(n.parameters(), lr=1e-3, eps=1e-5, fused=True) for n in alone]
    g = torch.Generator().manual_seed(2)
    for _t in range(5):
        for k, (a, b) in enumerate(zip(nets[:3], alone, strict=True)):
            obs = torch.randn(8, 4, generator=g) * (k + 1)  # each seed its own data
            for net in (a, b):
                net.zero_grad(set_to_none=True)
                dist, values = net(obs)
                (values.pow(2).mean() - dist.entropy().mean()).backward()
        optim.step_together(together)
        for opt in singles:
            opt.step()
    for a, b in zip(nets[:3], alone, strict=True):
        _assert_same_weights(a, b)
    assert all(opt.lean == (kernel == "fused") for opt in together)
