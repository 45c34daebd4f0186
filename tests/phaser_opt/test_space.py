"""Search-space templates: annotation forms, names, conditional branches, labels, validation, sampling."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import optuna
import pytest
import yaml

from phaser_opt.space import (
    AnnotationError,
    ChoiceParam,
    FloatParam,
    IntParam,
    label_of,
    load_template,
    load_template_text,
    parse_template,
    yaml_loader,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "plans" / "examples"

# plans/examples/gradient_1slice.yaml with its learning rates, grouping, defocus and noise model searched
GRADIENT_YAML = """\
name: gradient_1slice
backend: jax
dtype: float32
seed: 0
raw_data: {type: manual, path: ../../data/sim_1slice.h5}
init:
  probe: {type: focused, conv_angle: 20.0, defocus: !float {low: 50, high: 150, step: 10, name: defocus}}
  scan: {type: raster}
engines:
- type: gradient
  niter: 30
  grouping: !int {low: 8, high: 64, step: 8}
  noise_model: !choice
  - {type: poisson, eps: !float {low: 1e-3, high: 1.0, log: true}}
  - {type: anscombe, eps: !float [0, 0.5]}
  solvers:
    object: {type: adam, learning_rate: !float {low: 1e-3, high: 1e-1, log: true}}
    probe: {type: adam, learning_rate: !float {low: 1e-4, high: 1e-2, log: true}}
  update_probe: {after: !int [0, 10]}
  save_options:
    images: !choice {options: [[probe], [probe, object_phase_stack]], name: images, labels: [few, many]}
"""

GRADIENT_JSON = """\
{"name": "gradient_1slice", "backend": "jax", "dtype": "float32", "seed": 0,
 "raw_data": {"type": "manual", "path": "../../data/sim_1slice.h5"},
 "init": {"probe": {"type": "focused", "conv_angle": 20.0,
                    "defocus": {"$float": {"low": 50, "high": 150, "step": 10, "name": "defocus"}}},
          "scan": {"type": "raster"}},
 "engines": [{"type": "gradient", "niter": 30,
   "grouping": {"$int": {"low": 8, "high": 64, "step": 8}},
   "noise_model": {"$choice": [{"type": "poisson", "eps": {"$float": {"low": 0.001, "high": 1.0, "log": true}}},
                               {"type": "anscombe", "eps": {"$float": [0, 0.5]}}]},
   "solvers": {"object": {"type": "adam", "learning_rate": {"$float": {"low": 1e-3, "high": 0.1, "log": true}}},
               "probe": {"type": "adam", "learning_rate": {"$float": {"low": 0.0001, "high": 0.01, "log": true}}}},
   "update_probe": {"after": {"$int": [0, 10]}},
   "save_options": {"images": {"$choice": {"options": [["probe"], ["probe", "object_phase_stack"]],
                                           "name": "images", "labels": ["few", "many"]}}}}]}
"""

NOISE = "engines[0].noise_model"
POISSON_EPS = "engines[0].noise_model[poisson].eps"
ANSCOMBE_EPS = "engines[0].noise_model[anscombe].eps"


def space_of(text: str, fmt: str = "yaml"):
    return parse_template(load_template_text(text, "<test>", fmt))


def problems_of(text: str, fmt: str = "yaml") -> list[tuple[str, str]]:
    with pytest.raises(AnnotationError) as caught:
        space_of(text, fmt)
    return caught.value.problems


def only_problem(text: str) -> tuple[str, str]:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def run_study(space, sampler, n_trials: int) -> tuple[optuna.Study, dict[int, dict]]:
    """A study whose trials sample ``space``; returns it and each trial's plan by trial number."""
    plans: dict[int, dict] = {}

    def objective(trial: optuna.Trial) -> float:
        plans[trial.number] = space.sample(trial)
        return sum(v for v in trial.params.values() if isinstance(v, (int, float)))

    study = optuna.create_study(sampler=sampler, storage=optuna.storages.InMemoryStorage())
    study.optimize(objective, n_trials=n_trials)
    return study, plans


# ---- annotation forms and names ---------------------------------------------------------------------


def test_yaml_tags_and_json_dollar_form_give_the_same_space():
    yaml_space, json_space = space_of(GRADIENT_YAML), space_of(GRADIENT_JSON, "json")
    assert yaml_space.params == json_space.params
    assert yaml_space.tree == json_space.tree
    assert sorted(yaml_space.params) == sorted(
        [
            "defocus",
            "engines[0].grouping",
            NOISE,
            POISSON_EPS,
            ANSCOMBE_EPS,
            "engines[0].solvers.object.learning_rate",
            "engines[0].solvers.probe.learning_rate",
            "engines[0].update_probe.after",
            "images",
        ]
    )


def test_each_annotation_kind_is_read_with_all_its_keys():
    params = space_of(GRADIENT_YAML).params
    assert params["defocus"] == FloatParam("defocus", "init.probe.defocus", 50.0, 150.0, False, 10.0)
    assert params["engines[0].grouping"] == IntParam("engines[0].grouping", "engines[0].grouping", 8, 64, False, 8)
    lr = params["engines[0].solvers.object.learning_rate"]
    assert lr == FloatParam(lr.name, "engines[0].solvers.object.learning_rate", 1e-3, 0.1, True, None)
    images = params["images"]
    assert images.path == "engines[0].save_options.images"
    assert images.options == (["probe"], ["probe", "object_phase_stack"])
    assert images.labels == ("few", "many")


def test_dollar_form_is_accepted_in_yaml_too():
    tagged = space_of("a: !float {low: 0, high: 1, step: 0.1, name: beta}\nb: !int {low: 1, high: 9, log: true}")
    dollar = space_of("a: {$float: {low: 0, high: 1, step: 0.1, name: beta}}\nb: {$int: {low: 1, high: 9, log: true}}")
    assert tagged.params == dollar.params
    assert tagged.params["b"] == IntParam("b", "b", 1, 9, True, None)


def test_sequence_shorthand_is_low_high_without_log_or_step():
    params = space_of("x: !float [1e-3, 1e-1]\nn: !int [8, 64]\nc: !choice [a, b]").params
    assert params["x"] == FloatParam("x", "x", 1e-3, 0.1, False, None)
    assert params["n"] == IntParam("n", "n", 8, 64, False, None)
    assert params["c"] == ChoiceParam("c", "c", ("a", "b"), ("a", "b"))


def test_yaml_reads_exponents_without_a_dot_as_numbers_like_json():
    # plain YAML 1.1 reads 1e-3 as the string '1e-3'
    tree = yaml.load("a: [1e-3, 2E+5, 1.0e3, .5e1, 1e, e5]", Loader=yaml_loader())
    assert tree == {"a": [0.001, 200000.0, 1000.0, 5.0, "1e", "e5"]}


def test_a_loaded_template_parses_again_to_the_same_space():
    tree = load_template_text(GRADIENT_YAML, "<test>")
    once = parse_template(tree)
    assert parse_template(once.tree).params == once.params


def test_a_root_level_choice_of_whole_plans_is_named_root():
    space = space_of("!choice [{name: a, seed: !int [0, 3]}, {name: b}]")
    assert set(space.params) == {"<root>", "[a].seed"}
    assert space.concrete({"<root>": "b"}) == {"name": "b"}


# ---- conditional branches -----------------------------------------------------------------------------


def test_branch_parameters_exist_exactly_when_their_branch_is_chosen_in_a_tpe_study():
    space = space_of(GRADIENT_YAML)
    sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=5)
    study, plans = run_study(space, sampler, n_trials=24)
    chosen = [trial.params[NOISE] for trial in study.trials]
    assert set(chosen) == {"poisson", "anscombe"}  # both branches were explored
    for trial in study.trials:
        branch = trial.params[NOISE]
        assert (POISSON_EPS in trial.params) == (branch == "poisson")
        assert (ANSCOMBE_EPS in trial.params) == (branch == "anscombe")
        eps_name = POISSON_EPS if branch == "poisson" else ANSCOMBE_EPS
        noise_model = plans[trial.number]["engines"][0]["noise_model"]
        assert noise_model == {"type": branch, "eps": trial.params[eps_name]}


def test_branch_parameters_have_their_own_distributions():
    params = space_of(GRADIENT_YAML).params
    assert params[POISSON_EPS].distribution() == optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)
    assert params[ANSCOMBE_EPS].distribution() == optuna.distributions.FloatDistribution(0.0, 0.5)


def test_nested_choices_carry_every_branch_label_in_the_path():
    text = "noise: !choice [{type: poisson}, {type: amplitude, offset: !choice [0, {type: fit, k: !int [1, 3]}]}]"
    assert set(space_of(text).params) == {"noise", "noise[amplitude].offset", "noise[amplitude].offset[fit].k"}


def test_concrete_from_a_finished_trial_reproduces_the_plan_sampled_in_it():
    space = space_of(GRADIENT_YAML)
    study, plans = run_study(space, optuna.samplers.TPESampler(seed=3, n_startup_trials=4), n_trials=12)
    for trial in study.trials:
        assert space.concrete(trial.params) == plans[trial.number]


def test_sample_with_a_fixed_trial():
    space = space_of(GRADIENT_YAML)
    params = {
        "defocus": 70.0,
        "engines[0].grouping": 16,
        NOISE: "anscombe",
        ANSCOMBE_EPS: 0.25,
        "engines[0].solvers.object.learning_rate": 0.01,
        "engines[0].solvers.probe.learning_rate": 0.002,
        "engines[0].update_probe.after": 3,
        "images": "many",
    }
    plan = space.sample(optuna.trial.FixedTrial(params))
    engine = plan["engines"][0]
    assert plan["init"]["probe"] == {"type": "focused", "conv_angle": 20.0, "defocus": 70.0}
    assert engine["grouping"] == 16 and engine["update_probe"] == {"after": 3}
    assert engine["noise_model"] == {"type": "anscombe", "eps": 0.25}
    assert engine["solvers"]["object"]["learning_rate"] == 0.01
    assert engine["solvers"]["probe"]["learning_rate"] == 0.002
    assert engine["save_options"] == {"images": ["probe", "object_phase_stack"]}
    assert plan == space.concrete(params)


def test_concrete_names_a_missing_parameter():
    space = space_of("a: !float [0, 1]\nb: !int [1, 4]")
    with pytest.raises(AnnotationError) as caught:
        space.concrete({"a": 0.5})
    assert caught.value.problems == [("b", "no value for parameter 'b'")]


def test_concrete_refuses_a_value_that_is_no_label():
    space = space_of("noise: !choice [{type: poisson}, {type: anscombe}]")
    with pytest.raises(AnnotationError, match="'gaussian' is not a label of 'noise'"):
        space.concrete({"noise": "gaussian"})


# ---- tied names --------------------------------------------------------------------------------------


TIED = """\
solvers:
  object: {type: adam, learning_rate: !float {low: 1e-3, high: 1e-1, log: true, name: lr}}
  probe: {type: adam, learning_rate: {$float: {low: 0.001, high: 0.1, log: true, name: lr}}}
"""


def test_one_name_at_two_places_ties_the_fields_to_one_value():
    space = space_of(TIED)
    assert list(space.params) == ["lr"]
    study, plans = run_study(space, optuna.samplers.RandomSampler(seed=0), n_trials=5)
    for trial in study.trials:
        solvers = plans[trial.number]["solvers"]
        assert solvers["object"]["learning_rate"] == solvers["probe"]["learning_rate"] == trial.params["lr"]
    assert len({trial.params["lr"] for trial in study.trials}) == 5


def test_tied_names_with_different_distributions_are_an_error_naming_both_paths():
    path, message = only_problem(TIED.replace("high: 0.1", "high: 0.2"))
    assert path == "solvers.probe.learning_rate"
    assert "'lr' is also used at solvers.object.learning_rate with a different distribution" in message


def test_a_tie_between_a_float_and_an_int_is_an_error():
    path, message = only_problem("a: !float {low: 1, high: 4, name: n}\nb: !int {low: 1, high: 4, name: n}")
    assert (path, "is also used at a" in message) == ("b", True)


def test_the_same_name_in_two_branches_is_one_parameter():
    eps = "!float {low: 0, high: 1, name: eps}"
    text = f"noise: !choice [{{type: poisson, eps: {eps}}}, {{type: anscombe, eps: {eps}}}]"
    space = space_of(text)
    assert set(space.params) == {"noise", "eps"}
    assert space.concrete({"noise": "anscombe", "eps": 0.3}) == {"noise": {"type": "anscombe", "eps": 0.3}}


# ---- choice labels ----------------------------------------------------------------------------------


def test_sub_plan_options_are_labelled_by_their_type():
    assert space_of(GRADIENT_YAML).params[NOISE].labels == ("poisson", "anscombe")


def test_a_list_of_engines_is_labelled_by_its_types_joined_with_plus():
    engines = (EXAMPLES / "chained.yaml").read_text().split("engines:\n", 1)[1].replace("\n", "\n  ")
    text = f"engines: !choice\n- [{{type: gradient, niter: 30}}]\n- \n  {engines}"
    choice = space_of(text).params["engines"]
    assert choice.labels == ("gradient", "gradient+conventional")
    assert choice.options[1][1]["solver"] == {"type": "lsqml"}


def test_repeated_labels_get_a_count():
    text = "noise: !choice [{type: poisson, eps: 0.1}, {type: poisson}, {type: poisson, eps: 2}, {type: anscombe}]"
    assert space_of(text).params["noise"].labels == ("poisson", "poisson#2", "poisson#3", "anscombe")


def test_explicit_labels_override_the_automatic_ones_and_name_branches():
    text = "noise: !choice {options: [{type: poisson, eps: !float [0, 1]}, {type: poisson}], labels: [tuned, plain]}"
    space = space_of(text)
    assert space.params["noise"].labels == ("tuned", "plain")
    assert "noise[tuned].eps" in space.params


def test_scalar_options_are_stored_as_themselves():
    text = "a: !choice [16, 32, 64]\nb: !choice [null, 0.5, true, adam]"
    params = space_of(text).params
    assert params["a"].labels == (16, 32, 64)
    assert params["b"].labels == (None, 0.5, True, "adam")


def test_mixed_scalar_and_sub_plan_options_are_all_labelled_by_strings():
    text = "lr: !choice [0.5, null, {type: cosine, init: 0.2, final: 0.02}]"
    assert space_of(text).params["lr"].labels == ("0.5", "null", "cosine")


def test_scalars_equal_across_types_become_strings_so_optuna_keeps_them_apart():
    assert space_of("a: !choice [1, true, 1.0]").params["a"].labels == ("1", "true", "1.0")
    assert space_of("a: !choice [1, 1]").params["a"].labels == ("1", "1#2")


def test_label_of_prefers_type_then_name_then_the_index():
    assert label_of({"type": "adam", "name": "x"}, 0) == "adam"
    assert label_of({"name": "fast"}, 1) == "fast"
    assert label_of({"learning_rate": 0.1}, 2) == "option2"
    assert label_of([{"type": "gradient"}, {"type": "conventional"}], 0) == "gradient+conventional"
    assert label_of([{"type": "gradient"}, {"niter": 3}], 4) == "option4"
    assert label_of([], 5) == "option5"
    assert (label_of(None, 0), label_of(False, 0), label_of(0.25, 0), label_of("adam", 0)) == (
        "null",
        "false",
        "0.25",
        "adam",
    )


# ---- validation: one rule each, with its path and message ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("e: [{lr: !float [0.1, 0.1]}]", "e[0].lr", "low must be less than high (got low=0.1, high=0.1)"),
        ("e: [{lr: !float {low: 0, high: 1, log: true}}]", "e[0].lr", "log requires low > 0 (got low=0)"),
        ("n: !int {low: 0, high: 8, log: true}", "n", "log requires low > 0 (got low=0)"),
        ("a: {b: !float {low: 1, high: 8, log: true, step: 1}}", "a.b", "log and step cannot be combined"),
        ("a: !float {low: 0, high: 1, step: -0.5}", "a", "step must be positive (got -0.5)"),
        ("a: !float {low: 0, high: 1, step: 0.3}", "a", "high - low = 1 is not a whole number of steps of 0.3"),
        ("a: !int {low: 0, high: 10, step: 3}", "a", "high - low = 10 is not a whole number of steps of 3"),
        ("a: !int [1.5, 4]", "a", "low must be an integer in an int annotation (got 1.5)"),
        ("a: !int {low: 0, high: 8, step: 2.0}", "a", "step must be an integer in an int annotation (got 2.0)"),
        ("a: !float [0, .inf]", "a", "high must be a finite real number (got inf)"),
        ("a: !float [.nan, 1]", "a", "low must be a finite real number (got nan)"),
        ("a: !float [false, 1]", "a", "low must be a finite real number (got False)"),
        ("a: !float [zero, 1]", "a", "low must be a finite real number (got 'zero')"),
        ("a: !float {low: 0}", "a", "missing 'high'"),
        ("a: !float {low: 0, high: 1, log: yes please}", "a", "log must be true or false (got 'yes please')"),
        ("a: !float {low: 0, high: 1, name: 3}", "a", "name must be a non-empty string (got 3)"),
        ("a: !float [0, 1, 2]", "a", "the float shorthand is [low, high], got 3 values"),
        ("a: !float 0.5", "a", "a float annotation is [low, high] or {low: ..., high: ...}, got '0.5'"),
        ("a: !float {low: 0, high: 1, lgo: true}", "a", "unknown key 'lgo' in a float annotation"),
        ("a: !choice {options: [1, 2], label: [x, y]}", "a", "unknown key 'label' in a choice annotation"),
        ("a: !choice []", "a", "options must be a non-empty list (got [])"),
        ("a: !choice {options: adam}", "a", "options must be a non-empty list (got 'adam')"),
        ("a: !choice {options: [1, 2], labels: [x, x]}", "a", "label 'x' is used more than once"),
        ("a: !choice {options: [1, 2, 3], labels: [x, y]}", "a", "labels has 2 entries but there are 3 options"),
        ("a: !choice {options: [1, 2], labels: [x, 2]}", "a", "labels must be a list of strings (got ['x', 2])"),
        ("a: {$float: [0, 1], low: 2}", "a", "'$float' must be the only key of its mapping (found also 'low')"),
        ("a: {$flaot: [0, 1]}", "a", "unknown annotation '$flaot' (expected one of $float, $int, $choice)"),
        ("!float [0, 1]: x", "<root>", "an annotation cannot be a mapping key (!float at line 1, column 1)"),
    ],
)
def test_each_validation_rule_names_the_path(text, path, message):
    found_path, found_message = only_problem(text)
    assert found_path == path
    assert found_message.startswith(message)


def test_an_annotation_as_a_key_in_dollar_form_is_refused_with_its_mapping_path():
    problems = problems_of("init:\n  probe:\n    ? {$int: [1, 2]}\n    : 3\n")
    assert problems == [("init.probe", "an annotation cannot be a mapping key ({$int: ...} at line 3, column 7)")]


def test_every_problem_is_reported_at_once_with_its_path():
    text = """\
engines:
- noise_model: !choice
  - {type: poisson, eps: !float {low: 1, high: 0}}
  - {type: anscombe, eps: !float {low: 0, high: 1, log: true}}
  grouping: !int {low: 8, high: 64, step: 5, colour: red}
"""
    with pytest.raises(AnnotationError) as caught:
        space_of(text)
    assert [path for path, _ in caught.value.problems] == [
        "engines[0].noise_model[poisson].eps",
        "engines[0].noise_model[anscombe].eps",
        "engines[0].grouping",
        "engines[0].grouping",
    ]
    assert str(caught.value).startswith("<test>: 4 problems\n")
    assert "  engines[0].noise_model[anscombe].eps: log requires low > 0" in str(caught.value)
    assert "  engines[0].grouping: unknown key 'colour'" in str(caught.value)


# ---- reading files: duplicates, syntax errors -------------------------------------------------------------


def test_the_loader_refuses_a_duplicate_key_naming_it_with_its_line_and_column():
    text = "engines:\n- type: gradient\n  niter: 30\n  niter: 40\n"
    expected = "key 'niter' written twice in one mapping: at line 3, column 3 and at line 4, column 3"
    with pytest.raises(ValueError, match=expected):
        yaml.load(text, Loader=yaml_loader())
    with pytest.raises(AnnotationError) as caught:
        load_template_text(text, "plan.yaml")
    ((path, message),) = caught.value.problems
    assert path == "" and message.startswith(expected)


def test_a_duplicate_key_inside_an_annotation_is_refused():
    with pytest.raises(
        AnnotationError, match="key 'low' written twice in one mapping: at line 1, column 13 and at line 1, column 23"
    ):
        load_template_text("lr: !float {low: 0.1, low: 0.2, high: 1}", "<test>")


def test_merge_keys_may_be_overridden_without_being_duplicates():
    text = "base: &adam {type: adam, learning_rate: 0.1}\nprobe: {<<: *adam, learning_rate: !float [0, 1]}"
    space = space_of(text)
    assert space.concrete({"probe.learning_rate": 0.5})["probe"] == {"type": "adam", "learning_rate": 0.5}


def test_the_loader_builds_no_python_objects():
    with pytest.raises(AnnotationError, match="line 1, column 4: could not determine a constructor"):
        load_template_text("a: !!python/object/apply:os.getcwd []", "<test>")


def test_yaml_syntax_errors_give_line_and_column():
    with pytest.raises(AnnotationError) as caught:
        load_template_text("init:\n  probe: {type: focused\nengines: []\n", "plan.yaml")
    ((path, message),) = caught.value.problems
    assert path == "" and message.startswith("not valid YAML at line 3, column 8: ")
    assert str(caught.value).startswith("plan.yaml: 1 problem\n")


def test_json_syntax_errors_and_duplicate_keys():
    with pytest.raises(AnnotationError, match=r"line 2, column 13: Expecting ',' delimiter"):
        load_template_text('{"a": 1,\n "b": [1, 2 3]}', "plan.json", "json")
    with pytest.raises(AnnotationError, match="key 'a' written twice in one object"):
        load_template_text('{"a": 1, "a": 2}', "plan.json", "json")


def test_load_template_reads_by_suffix_and_names_a_missing_file(tmp_path):
    (tmp_path / "t.json").write_text(GRADIENT_JSON)
    (tmp_path / "t.yml").write_text(GRADIENT_YAML)
    assert parse_template(load_template(tmp_path / "t.json")).params == space_of(GRADIENT_YAML).params
    assert parse_template(load_template(str(tmp_path / "t.yml"))).params == space_of(GRADIENT_YAML).params
    with pytest.raises(AnnotationError) as caught:
        load_template(tmp_path / "absent.yaml")
    assert caught.value.problems == [("", "file not found")]
    assert str(tmp_path / "absent.yaml") in str(caught.value)


def test_load_template_names_the_file_in_validation_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: !float [1, 0]\n")
    with pytest.raises(AnnotationError, match=f"^{path}: 1 problem\n  a: low must be less than high"):
        load_template(path)


# ---- plain plans, corners, copies -------------------------------------------------------------------------


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_a_plain_plan_is_its_own_only_sample(example):
    tree = load_template(example)
    space = parse_template(tree, str(example))
    assert space.is_empty and len(space) == 0 and space.params == {}
    assert space.sample(optuna.trial.FixedTrial({})) == tree
    assert space.concrete({}) == tree
    assert space.corner("random") == ({}, tree)


def test_low_and_high_corners_take_the_bounds_and_first_or_last_option():
    space = space_of(GRADIENT_YAML)
    low_params, low_plan = space.corner("low")
    high_params, high_plan = space.corner("high")
    assert low_params == {
        "defocus": 50.0,
        "engines[0].grouping": 8,
        NOISE: "poisson",
        POISSON_EPS: 1e-3,
        "engines[0].solvers.object.learning_rate": 1e-3,
        "engines[0].solvers.probe.learning_rate": 1e-4,
        "engines[0].update_probe.after": 0,
        "images": "few",
    }
    assert high_params[NOISE] == "anscombe" and high_params[ANSCOMBE_EPS] == 0.5 and POISSON_EPS not in high_params
    assert (high_params["defocus"], high_params["engines[0].grouping"], high_params["images"]) == (150.0, 64, "many")
    assert low_plan == space.concrete(low_params) and high_plan == space.concrete(high_params)


def test_random_corner_is_reproducible_within_bounds_and_on_the_step_grid():
    space = space_of(GRADIENT_YAML)
    assert space.corner("random", seed=7) == space.corner("random", seed=7)
    points = [space.corner("random", seed=seed)[0] for seed in range(30)]
    assert len({point["defocus"] for point in points}) > 3  # the seed matters
    for point in points:
        for name, value in point.items():
            param = space.params[name]
            if isinstance(param, ChoiceParam):
                assert value in param.labels
            else:
                assert param.low <= value <= param.high and isinstance(value, type(param.low)), (name, value)
        assert (point["defocus"] - 50) % 10 == 0 and point["engines[0].grouping"] % 8 == 0


def test_random_corner_is_log_uniform_for_log_parameters():
    space = space_of("lr: !float {low: 1e-6, high: 1, log: true}")
    values = [space.corner("random", seed=seed)[0]["lr"] for seed in range(40)]
    # log-uniform: about half below 1e-3; uniform would put ~all of them above 1e-2
    assert 10 <= sum(value < 1e-3 for value in values) <= 30
    assert all(1e-6 <= value <= 1 for value in values)


def test_corner_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="'middle'"):
        space_of(GRADIENT_YAML).corner("middle")


def test_sampling_never_changes_the_template_and_plans_share_nothing_with_it():
    space = space_of(GRADIENT_YAML)
    before = copy.deepcopy(space.tree)
    _, plan = space.corner("high")
    plan["engines"][0]["noise_model"]["eps"] = -1
    plan["engines"][0]["save_options"]["images"].append("probe_recip")
    plan["init"]["scan"]["type"] = "spiral"
    assert space.tree == before
    assert space.corner("high")[1]["engines"][0]["save_options"]["images"] == ["probe", "object_phase_stack"]
    assert space.params["images"].options[1] == ["probe", "object_phase_stack"]


def test_a_concrete_plan_is_plain_json_data():
    plan = space_of(GRADIENT_JSON, "json").corner("low")[1]
    assert json.loads(json.dumps(plan)) == plan


def test_keys_that_are_not_identifiers_are_quoted_in_paths():
    assert list(space_of("solvers:\n  learning-rate: !float [0, 1]").params) == ["solvers['learning-rate']"]


def test_params_are_in_document_order_with_a_choice_before_its_branches():
    assert list(space_of(GRADIENT_YAML).params) == [
        "defocus",
        "engines[0].grouping",
        NOISE,
        POISSON_EPS,
        ANSCOMBE_EPS,
        "engines[0].solvers.object.learning_rate",
        "engines[0].solvers.probe.learning_rate",
        "engines[0].update_probe.after",
        "images",
    ]
