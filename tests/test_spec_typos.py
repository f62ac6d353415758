"""Typed, strict model specs and inference configs: a misspelt key or section, a wrong type,
NaN/inf or a value out of range is ONE error line naming the file and the key (with the key
meant, where one is close), never a fit with other settings than the user wrote (issue 14).

Most cases go through the spec loader in process (milliseconds each); one runs the real
command to show the boundary: exit 2, one line on stderr, no output folder."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_measure.errors import InputError
from llm_measure.families.gstudy.spec import GStudySpec
from llm_measure.families.shared_bias.spec import SharedBiasSpec
from llm_measure.families.spec import load_spec, spec_from_dict, spec_from_toml
from llm_measure.inference.config import load_config
from llm_measure.paths import SPECS_DIR

ROOT = Path(__file__).resolve().parents[1]
GSTUDY = (SPECS_DIR / "gstudy_teacher_lesson_rater.toml").read_text(encoding="utf-8")
SHARED = (SPECS_DIR / "shared_bias.toml").read_text(encoding="utf-8")
HANNA = (SPECS_DIR / "shared_bias_hanna.toml").read_text(encoding="utf-8")


def edited(text: str, old: str, new: str) -> str:
    assert old in text, old  # the edit must apply, or the case tests the unedited spec
    return text.replace(old, new, 1)


# (case, spec text, the key path named, substrings of the message)
TYPOS = [
    (
        "integrate_out misspelt",
        edited(GSTUDY, "integrate_out =", "integrate_ot ="),
        "integrate_ot",
        ["unknown key 'integrate_ot'", "did you mean 'integrate_out'?"],
    ),
    (
        "prior key misspelt (gstudy)",
        edited(GSTUDY, "component_scale = 1.0", "componnet_scale = 1.0"),
        "priors.componnet_scale",
        ["unknown key 'componnet_scale' in [priors]; did you mean 'component_scale'?"],
    ),
    (
        "prior key misspelt (shared_bias)",
        edited(SHARED, "component_scale = 1.0", "componnet_scale = 1.0"),
        "priors.componnet_scale",
        ["unknown key 'componnet_scale' in [priors]; did you mean 'component_scale'?"],
    ),
    (
        "[prior] section",
        edited(GSTUDY, "[priors]", "[prior]"),
        "prior",
        ["unknown section [prior]; did you mean 'priors'?"],
    ),
    (
        "[term] section (shared_bias)",
        edited(SHARED, "[terms]", "[term]"),
        "term",
        ["unknown section [term]; did you mean 'terms'?"],
    ),
    (
        "American 'centered' (gstudy)",  # the allowed values are spelt "centred", "noncentred"
        GSTUDY + '\n[parameterization]\nrater = "centered"\n',
        "parameterization.rater",
        ["is one of auto, centred, noncentred, not 'centered'", "did you mean 'centred'?"],
    ),
    (
        "American 'centered' (shared_bias)",
        SHARED + '\n[parameterization]\nshared = "centered"\n',
        "parameterization.shared",
        ["is one of centred, noncentred, not 'centered'"],
    ),
    (
        "a boolean for a number",
        edited(GSTUDY, "nu = 3", "nu = true"),
        "priors.nu",
        ["nu in [priors] must be a number, not true"],
    ),
    (
        "NaN",
        edited(GSTUDY, "component_scale = 1.0", "component_scale = nan"),
        "priors.component_scale",
        ["must be a finite number, not nan"],
    ),
    (
        "infinity",
        edited(SHARED, "component_scale = 1.0", "component_scale = inf"),
        "priors.component_scale",
        ["must be a finite number, not inf"],
    ),
    (
        "negative scale",
        edited(GSTUDY, "component_scale = 1.0", "component_scale = -1.0"),
        "priors.component_scale",
        ["must be greater than 0, not -1.0"],
    ),
    (
        "zero D-study size",
        edited(GSTUDY, "lesson = 4, segment", "lesson = 0, segment"),
        "dstudy.sizes.lesson",
        ["must be greater than 0"],
    ),
    (
        '"auto" misspelt where a number may stand',
        edited(SHARED, 'location = "auto"', 'location = "aut"'),
        "priors.location",
        ['must be "auto" or a number'],
    ),
    (
        "a number for true/false",
        edited(SHARED, "model_prompt_segment = true", "model_prompt_segment = 1"),
        "terms.model_prompt_segment",
        ["must be true or false"],
    ),
    (
        "an enum value misspelt",
        edited(SHARED, 'loadings = "equal"', 'loadings = "per-level"'),
        "terms.loadings",
        ["is one of equal, per_level", "did you mean 'per_level'?"],
    ),
    (
        "a whole number written as 3.0",
        edited(HANNA, "model_samples = 3", "model_samples = 3.0"),
        "scores.model_samples",
        ["must be a whole number"],
    ),
    (
        "a key misspelt in [units] (the required key then missing too)",
        edited(HANNA, 'unit = "story_id"', 'unt = "story_id"'),
        "units.unt",
        ["unknown key 'unt' in [units]; did you mean 'unit'?"],
    ),
    (
        "a per-component prior for a component that is not there",
        GSTUDY + "\n[priors.components.ratr]\nscale = 0.5\n",
        "priors.components.ratr",
        ["not in [components]", "did you mean 'rater'?"],
    ),
    (
        "a section that is not a table",
        "priors = 3\n" + GSTUDY.split("[priors]")[0],  # the file without its [priors]
        "priors",
        ["priors must be a table, not 3"],
    ),
]


@pytest.mark.parametrize("text,key,expected", [c[1:] for c in TYPOS], ids=[c[0] for c in TYPOS])
def test_a_typo_is_one_line_naming_the_file_and_key(tmp_path, text, key, expected):
    path = tmp_path / "bad_spec.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_spec(path)
    message = str(err.value)
    assert err.value.file == str(path) and err.value.column == key, message
    assert "\n" not in message and message.startswith(str(path))
    for text_part in expected:
        assert text_part in message, message


def test_the_typo_through_the_command_exits_2_with_one_line_and_no_output(tmp_path):
    spec = tmp_path / "bad_spec.toml"
    spec.write_text(
        edited(GSTUDY, "component_scale = 1.0", "componnet_scale = 1.0"), encoding="utf-8"
    )
    out = tmp_path / "fit"
    # no --data: the embedded default data; the spec is read before any data or sampling
    res = subprocess.run(
        [sys.executable, "-m", "src.fit", "--model", str(spec), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert lines == [
        f"error: {spec}, column 'priors.componnet_scale': unknown key 'componnet_scale' "
        "in [priors]; did you mean 'component_scale'?"
    ], res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [spec]


@pytest.mark.parametrize("path", sorted(SPECS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_bundled_spec_loads_into_its_typed_model(path):
    spec = load_spec(path)
    model = {"gstudy": GStudySpec, "shared_bias": SharedBiasSpec}[spec.family]
    assert isinstance(spec.typed, model)
    assert spec.typed.likelihood == spec.likelihood
    # the typed model holds what the file says, with the defaults filled in
    if spec.family == "gstudy":
        assert spec.typed.components == spec.raw["components"]
        assert spec.typed.priors.nu == spec.raw.get("priors", {}).get("nu", 3.0)
    else:
        priors = spec.raw.get("priors", {})
        assert spec.typed.priors.component_scale == priors.get("component_scale", 1.0)


def test_a_spec_from_a_string_or_a_dict_is_the_same_spec():
    from_file = load_spec(SPECS_DIR / "shared_bias_hanna.toml")
    from_text = spec_from_toml(HANNA)
    from_dict = spec_from_dict(from_file.raw, name="my_spec")
    assert from_text.typed == from_file.typed == from_dict.typed
    assert from_text.text == HANNA and from_dict.name == "shared_bias_hanna"
    with pytest.raises(InputError) as err:
        spec_from_toml(edited(HANNA, "[raters]", "[rater]"))
    assert str(err.value).startswith("<spec>, column 'rater': unknown section [rater]")
    bad = {**from_file.raw, "priors": {**from_file.raw["priors"], "loading_sd": float("nan")}}
    with pytest.raises(InputError) as err:
        spec_from_dict(bad, name="my_spec")
    assert str(err.value).startswith("my_spec, column 'priors.loading_sd': ")


def test_a_per_component_prior_is_accepted_where_the_component_exists():
    spec = spec_from_toml(GSTUDY + "\n[priors.components.rater]\nscale = 0.5\n")
    assert spec.typed.priors.components["rater"].scale == 0.5


def _misspelt(key: str) -> str:
    middle = len(key) // 2
    return key[:middle] + key[middle + 1 :]  # one letter left out


def test_every_key_of_every_bundled_spec_misspelt_is_named_with_the_key_meant():
    tried = 0
    for path in sorted(SPECS_DIR.glob("*.toml")):
        raw = load_spec(path).raw
        # [components] names are the user's own: any name is one
        sections = [((), raw)] + [
            ((k,), v) for k, v in raw.items() if isinstance(v, dict) and k != "components"
        ]
        for where, table in sections:
            for key in [k for k in table if len(k) >= 4 and k != "family"]:
                bad = dict(raw) if not where else {**raw, where[0]: dict(table)}
                target = bad if not where else bad[where[0]]
                target[_misspelt(key)] = target.pop(key)
                with pytest.raises(InputError) as err:
                    spec_from_dict(bad, name=path.name)
                    pytest.fail(f"{path.name}: {where} {key} misspelt was accepted")
                message = str(err.value)
                assert err.value.column == ".".join((*where, _misspelt(key))), message
                assert f"did you mean '{key}'?" in message, message
                tried += 1
    assert tried > 80  # every section of the eleven bundled specs


# A prior scale is accepted exactly when it is a finite number > 0 (not a boolean); "auto" only
# where the key allows it, and the location keys may be any finite number.
PRIOR_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.booleans(),
    st.sampled_from(["auto", "1.0", ""]),
)
PRIOR_KEYS = [
    ("gstudy", key) for key in ("nu", "intercept_scale", "component_scale", "cut_scale")
] + [
    ("shared_bias", key) for key in type(SharedBiasSpec.model_fields["priors"].default).model_fields
]


def _acceptable(family: str, key: str, value) -> bool:
    if value == "auto":
        return family == "shared_bias" and key in (
            "location",
            "scale",
            "outcome_location",
            "outcome_scale",
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return "location" in key or value > 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PRIOR_KEYS), PRIOR_VALUES)
def test_a_prior_value_is_accepted_exactly_when_it_is_valid(family_key, value):
    family, key = family_key
    raw = spec_from_toml(GSTUDY if family == "gstudy" else SHARED).raw
    raw = {**raw, "priors": {**raw["priors"], key: value}}
    try:
        spec = spec_from_dict(raw)
    except InputError as err:
        assert not _acceptable(family, key, value), str(err)
        assert err.column == f"priors.{key}" and "\n" not in str(err)
        return
    assert _acceptable(family, key, value), value
    assert getattr(spec.typed.priors, key) == value


# ---- inference configs ------------------------------------------------------------------------
CONFIG = textwrap.dedent(
    """
    run_id = "typos"
    [transcripts]
    source = "talkmoves"
    max_lessons = 2
    [rubric]
    items = ["CLINSTD"]
    [[models]]
    name = "m"
    backend = "openai"
    model = "some-model"
    temperature = 0.5
    """
)


@pytest.mark.parametrize(
    "old,new,key,expected",
    [
        (
            "max_lessons",
            "max_lesson",
            "transcripts.max_lesson",
            "unknown key 'max_lesson' in [transcripts]; did you mean 'max_lessons'?",
        ),
        (
            "temperature",
            "temprature",
            "models[0].temprature",
            "unknown key 'temprature' in models[0]; did you mean 'temperature'?",
        ),
        ("temperature = 0.5", "temperature = nan", "models[0].temperature", "finite number"),
        ("max_lessons = 2", "max_lessons = true", "transcripts.max_lessons", "whole number"),
    ],
)
def test_a_typo_in_an_inference_config_is_named_with_a_suggestion(
    tmp_path, old, new, key, expected
):
    path = tmp_path / "run.toml"
    path.write_text(edited(CONFIG, old, new), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_config(path, tmp_path)
    assert err.value.column == key and expected in str(err.value), str(err.value)
    path.write_text(CONFIG, encoding="utf-8")
    assert load_config(path, tmp_path).transcripts["max_lessons"] == 2  # the unedited one loads


def test_a_misspelt_family_name_is_named_with_the_family_meant():
    # the registry lists the families; a near miss gets the same suggestion as a key
    with pytest.raises(InputError, match=r"unknown family 'gstdy' .*did you mean 'gstudy'\?"):
        spec_from_toml('family = "gstdy"\n')
