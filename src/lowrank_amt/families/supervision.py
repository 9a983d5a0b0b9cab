"""How a low-rank model's templates relate to the piano keys, its ``supervision``: one
strategy object each, which ``lowrank.LowRankFamily`` asks instead of testing the name.

* ``supervised``: templates per key learned from the isolated notes, then fixed;
* ``semi_supervised``: templates per key learned on the training pieces, each active only
  where its key sounds (the roll is a mask);
* ``unsupervised``: ``rank`` free templates, each given the key of its estimated pitch.
"""

from __future__ import annotations


class Supervision:
    name = ""
    #: what a model learns from: "isolated" (the isolated notes) or "pieces"
    training_data = "pieces"
    #: training reads the pieces' note targets, as masks of the activations
    masks = False
    #: templates are laid out per key (``lowrank.template_layout``), else given keys by pitch
    keyed = True

    def refuses(self, spec: dict) -> str | None:
        """Why a spec's combination of keys does not fit this supervision (None if it does)."""
        return None


class Supervised(Supervision):
    name = "supervised"
    training_data = "isolated"

    def refuses(self, spec):
        if spec["form"] != "full_batch":
            return ("model key 'form' must be 'full_batch' for supervision 'supervised' "
                    "(templates are learned key by key from the isolated notes)")
        return _no_teacher(spec) or _no_isolated_start(spec)


class SemiSupervised(Supervision):
    name = "semi_supervised"
    masks = True

    def refuses(self, spec):
        return _no_templates_from(spec)


class Unsupervised(Supervision):
    name = "unsupervised"
    keyed = False

    def refuses(self, spec):
        if spec["templates_per_key"] > 1 or spec["attack_frames"]:
            return ("model keys 'templates_per_key' and 'attack_frames' are for supervision 'supervised' "
                    "or 'semi_supervised' (templates given to keys)")
        return _no_templates_from(spec) or _no_teacher(spec) or _no_isolated_start(spec)


def _no_templates_from(spec):
    if spec["templates_from"] is not None:
        return "model key 'templates_from' is for supervision 'supervised' (templates from isolated notes)"


def _no_teacher(spec):
    if spec["teacher"] is not None:
        return "model key 'teacher' is for supervision 'semi_supervised' (the teacher's notes are the masks)"


def _no_isolated_start(spec):
    if spec["dictionary_start"] == "isolated":
        return "model key 'dictionary_start: isolated' is for supervision 'semi_supervised'"


#: supervision name -> its strategy
SUPERVISIONS = {s.name: s for s in (Supervised(), SemiSupervised(), Unsupervised())}
