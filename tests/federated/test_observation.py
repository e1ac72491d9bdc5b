import dataclasses

import pytest
import torch
from torch import nn

import fastleak.data as D
import fastleak.models as M
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import Pair, fedsgd
from fastleak.federated.observation import same_protocol


@pytest.fixture(scope="module")
def lenet():
    return M.build("lenet", 10, seed=0)


@pytest.fixture(scope="module")
def obs(lenet):
    return fedsgd(lenet, *D.load("cifar10", 2, seed=0))


def _with_pair(obs, state=None, shared=None):
    pair = obs.pairs[0]
    return dataclasses.replace(obs, pairs=(Pair(state=pair.state if state is None else state,
                                                 shared=pair.shared if shared is None else shared),))


def test_an_observation_of_the_model_fits_it(obs, lenet):
    obs.check_against(lenet)


def test_a_model_of_another_type_is_refused(obs):
    with pytest.raises(InvalidTypeError, match="model must be a torch.nn.Module, got dict"):
        obs.check_against({})


def test_parameter_names_of_another_model_are_refused_by_name(obs):
    other = M.build("convnet", 10, width=2)
    with pytest.raises(InvalidValueError, match=r"observation.param_names does not match the model's trainable "
                                                r"parameters: expected their \d+ names in model order; missing"):
        obs.check_against(other)


def test_parameter_names_out_of_order_are_refused(obs, lenet):
    order = list(reversed(range(len(obs.param_names))))
    swapped = dataclasses.replace(obs, param_names=tuple(obs.param_names[i] for i in order),
                                  pairs=(Pair(obs.pairs[0].state, tuple(obs.pairs[0].shared[i] for i in order)),))
    with pytest.raises(InvalidValueError, match=r"\(different order\)"):
        swapped.check_against(lenet)


def test_a_frozen_parameter_must_not_be_shared(obs):
    frozen = M.build("lenet", 10, seed=0)
    frozen.body[0].weight.requires_grad_(False)
    with pytest.raises(InvalidValueError, match=r"unexpected \['body.0.weight'\]"):
        obs.check_against(frozen)


def test_a_shared_tensor_of_another_shape_is_refused_naming_pair_and_parameter(obs):
    wider = M.build("lenet", 7)
    with pytest.raises(InvalidValueError, match=r"observation.pairs\[0\].shared\['fc.weight'\] has shape "
                                                r"\(10, \d+\), expected the model's \(7, \d+\)"):
        obs.check_against(wider)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_shared_values_are_refused_naming_the_parameter(obs, lenet, value):
    shared = list(obs.pairs[0].shared)
    shared[1] = shared[1].clone()
    shared[1].view(-1)[0] = value
    with pytest.raises(InvalidValueError, match=rf"observations\[3\].pairs\[0\].shared\['{obs.param_names[1]}'\] "
                                                r"contains NaN or inf; expected finite values"):
        _with_pair(obs, shared=tuple(shared)).check_against(lenet, "observations[3]")


def test_a_state_without_the_models_entries_is_refused(obs, lenet):
    state = dict(obs.pairs[0].state)
    del state["fc.bias"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(InvalidValueError, match=r"observation.pairs\[0\].state does not match the model's "
                                                r"state_dict: missing \['fc.bias'\], unexpected \['extra'\]"):
        _with_pair(obs, state=state).check_against(lenet)


def test_a_state_entry_of_another_shape_or_with_nan_is_refused(obs, lenet):
    state = dict(obs.pairs[0].state)
    state["fc.bias"] = torch.zeros(3)
    with pytest.raises(InvalidValueError, match=r"state\['fc.bias'\] has shape \(3,\), expected the model's "
                                                r"\(10,\)"):
        _with_pair(obs, state=state).check_against(lenet)
    state["fc.bias"] = torch.full((10,), float("nan"))
    with pytest.raises(InvalidValueError, match=r"state\['fc.bias'\] contains NaN or inf"):
        _with_pair(obs, state=state).check_against(lenet)


def test_input_shape_and_classes_come_from_the_observation_or_the_model(obs, lenet):
    assert obs.input_shape_for(lenet) == (3, 32, 32) and obs.num_classes_for(lenet) == 10
    bare = dataclasses.replace(obs, input_shape=None, num_classes=None)
    assert bare.input_shape_for(lenet) == (3, 32, 32) and bare.num_classes_for(lenet) == 10
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    with pytest.raises(InvalidValueError, match="observation.input_shape is None and the model is not a fastleak "
                                                "model.*set Observation.input_shape"):
        bare.input_shape_for(plain)
    assert bare.num_classes_for(plain) == 4


def test_to_moves_every_tensor(obs):
    moved = obs.to("meta")
    assert all(t.device.type == "meta" for t in moved.pairs[0].shared)
    assert all(t.device.type == "meta" for t in moved.pairs[0].state.values())
    assert moved.param_names == obs.param_names and moved.num_samples == obs.num_samples


def test_the_protocol_is_what_the_client_computed_and_nothing_of_its_data(obs):
    protocol = obs.protocol
    assert protocol.kind == "gradient" and protocol.param_names == obs.param_names
    assert protocol == dataclasses.replace(obs, num_samples=7, meta={"client": 3}).protocol
    assert protocol != dataclasses.replace(obs, local_steps=2).protocol
    assert protocol.schedule(4) == ((0, 4),)
    assert dataclasses.replace(obs, local_steps=3, local_batch_size=2).protocol.schedule(4) == ((0, 2), (2, 4), (0, 2))


def test_observations_of_another_protocol_are_named(obs):
    same_protocol([obs, dataclasses.replace(obs, num_samples=5)], "why")
    with pytest.raises(InvalidValueError, match=r"observations\[1\].loss = 'mse' differs from observations\[0\] "
                                                r"\('ce'\); they must agree"):
        same_protocol([obs, dataclasses.replace(obs, loss="mse")], "they must agree")
    with pytest.raises(InvalidValueError, match=r"observations\[1\].num_samples = 5 differs"):
        same_protocol([obs, dataclasses.replace(obs, num_samples=5)], "why", also=("num_samples",))
