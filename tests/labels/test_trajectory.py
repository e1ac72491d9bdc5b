import torch

import fastleak.data as D
import fastleak.labels as L
import fastleak.models as M
from fastleak.federated import fedavg, fedsgd
from fastleak.labels import trajectory
from fastleak.labels.evidence import gather


def test_update_statistics_are_taken_where_the_local_steps_were():
    model = M.build("lenet", 10, seed=0)
    x, y = D.load("cifar10", 4, seed=0, labels="random")
    obs = [fedsgd(model, x, y), fedavg(model, x, y, local_steps=4, lr=0.01),
           fedavg(model, x, y, local_steps=16, lr=0.01), fedavg(model, x, y, local_steps=2, lr=0.01, epochs=2)]
    ev = gather(obs, model)
    t, w = trajectory.times(ev, L.LabelConfig())
    torch.testing.assert_close(t[0], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(t[1, :4], torch.tensor([0, 0.25, 0.5, 0.75], dtype=torch.float64))
    torch.testing.assert_close(t[2], torch.linspace(0, 15 / 16, 5, dtype=torch.float64))
    torch.testing.assert_close(t[3, :4], torch.tensor([0, 0.25, 0.5, 0.75], dtype=torch.float64))
    torch.testing.assert_close(w.sum(1), torch.ones(4, dtype=torch.float64))
    assert w[0, 1:].eq(0).all() and w[1, 4] == 0
    one = trajectory.times(ev, L.LabelConfig(trajectory_points=1))[0]
    torch.testing.assert_close(one[:, 0], torch.tensor([0, 3 / 8, 15 / 32, 3 / 8], dtype=torch.float64))
    end = trajectory.state_at(ev, 1, 1.0)
    for name, delta in zip(obs[1].param_names, obs[1].pairs[0].shared):
        torch.testing.assert_close(end[name], obs[1].pairs[0].state[name] + delta)


def test_update_pseudo_gradient_undoes_sign_lr_and_steps():
    model = M.build("lenet", 10, seed=0)
    x, y = D.load("cifar10", 6, seed=1, labels="random")
    grad = gather([fedsgd(model, x, y)], model)
    for steps, lr in ((1, 0.05), (3, 1e-4)):
        upd = gather([fedavg(model, x, y, local_steps=steps, lr=lr)], model)
        # tiny steps keep the pseudo-gradient close to the gradient at the start
        torch.testing.assert_close(upd.grad_b, grad.grad_b, rtol=0.05, atol=2e-3)
        assert torch.sign(upd.grad_w).eq(torch.sign(grad.grad_w)).double().mean() > 0.95
