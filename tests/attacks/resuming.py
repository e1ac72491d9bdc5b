"""An attack run straight through, and the same attack interrupted and resumed from its checkpoint."""
import pytest

from fastleak.attacks import attack

INTERRUPT_AT = 5


def straight_and_resumed(obs, model, preset, path, **opts):
    """(straight, resumed): ``attack(obs, model, preset, **opts)`` run through, and run with a checkpoint
    at ``path`` that a KeyboardInterrupt stops at step ``INTERRUPT_AT``, then resumed from it."""
    straight = attack(obs, model, preset, **opts)

    def interrupt(step, losses):
        if step == INTERRUPT_AT:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        attack(obs, model, preset, checkpoint=path, callback=interrupt, **opts)
    assert path.exists()
    return straight, attack(obs, model, preset, checkpoint=path, **opts)
