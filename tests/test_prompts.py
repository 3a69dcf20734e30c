import pytest

from unsee.errors import UnseeError
from unsee.generate.prompts import read_prompts
from unsee.generate.run import Job, batches, plan_jobs


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_text_file_one_prompt_a_line(tmp_path):
    rows = read_prompts(write(tmp_path, "p.txt", "a cat\n\n  a dog  \n"))
    assert [r.prompt for r in rows] == ["a cat", "a dog"]
    assert [r.line for r in rows] == [1, 3]
    assert rows[0].seed is None and rows[0].guidance is None


def test_i2p_csv_layout_is_honoured(tmp_path):
    text = (
        "prompt,categories,hard,evaluation_seed,evaluation_guidance,case_number\n"
        '"a body, painted",sexual,1,2734971755,7,12\n'
        "a street,violence,0,42,9.5,13\n"
    )
    rows = read_prompts(write(tmp_path, "i2p.csv", text))
    assert rows[0].prompt == "a body, painted"
    assert (rows[0].seed, rows[0].guidance, rows[0].ids) == (2734971755, 7.0, {"case_number": "12"})
    assert (rows[1].seed, rows[1].guidance) == (42, 9.5)


def test_coco_csv_layout(tmp_path):
    rows = read_prompts(write(tmp_path, "coco.csv", "image_id,prompt\n9,a bus\n25,a giraffe\n"))
    assert [(r.prompt, r.ids["image_id"]) for r in rows] == [("a bus", "9"), ("a giraffe", "25")]


def test_utf8_bom_is_ignored(tmp_path):
    rows = read_prompts(write(tmp_path, "bom.csv", "\ufeffprompt\nun café\n"))
    assert rows[0].prompt == "un café"


@pytest.mark.parametrize(
    "text,message",
    [
        ("prompt,evaluation_seed\na,1\nb,2,3\n", r"bad.csv:3: more fields"),
        ("prompt,evaluation_seed\na,1\nb\n", r"bad.csv:3: fewer fields"),
        ("prompt,evaluation_seed\na,one\n", r"bad.csv:2: evaluation_seed 'one' is not a number"),
        ("prompt,evaluation_seed\na,1.5\n", r"bad.csv:2: evaluation_seed '1.5' is not a whole"),
        ("prompt,evaluation_guidance\n,7\n", r"bad.csv:2: empty prompt"),
        ('prompt,case_number\n"two\nlines",1\nb,2,3\n', r"bad.csv:4: more fields"),
        ('prompt\n"unclosed\n', r"bad.csv:\d+: malformed CSV"),
        ("text,seed\na,1\n", r"no 'prompt' column \(columns: text, seed\)"),
        ("prompt\n", r"holds no prompts"),
        (
            "prompt,evaluation_seed\na,4294967296\n",
            r"bad.csv:2: evaluation_seed 4294967296 is outside",
        ),
    ],
)
def test_malformed_csv_names_the_line(tmp_path, text, message):
    with pytest.raises(UnseeError, match=message):
        read_prompts(write(tmp_path, "bad.csv", text))


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(UnseeError, match="does not exist"):
        read_prompts(tmp_path / "none.txt")
    path = tmp_path / "bin.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UnseeError, match="not UTF-8"):
        read_prompts(path)


def test_seed_plan(tmp_path):
    rows = read_prompts(write(tmp_path, "p.csv", "prompt,evaluation_seed\na,100\nb,\n"))
    jobs = plan_jobs(rows, n=3, seed=7, guidance=5.0)
    assert [j.index for j in jobs] == list(range(6))
    assert [j.seed for j in jobs] == [100, 101, 102, 7 + 3, 7 + 4, 7 + 5]
    assert {j.guidance for j in jobs} == {5.0}


def test_seeds_stay_below_2_to_the_32(tmp_path):
    """torch's CPU generator reads a seed mod 2^32, so a larger one would silently repeat
    a smaller one's image: refused wherever a seed comes from."""
    from unsee.generate.config import GenerateConfig

    rows = read_prompts(write(tmp_path, "p.csv", "prompt,evaluation_seed\na,4294967295\n"))
    assert plan_jobs(rows, n=1, seed=0, guidance=5.0)[0].seed == 2**32 - 1
    with pytest.raises(UnseeError, match="image 1 would get seed 4294967296"):
        plan_jobs(rows, n=2, seed=0, guidance=5.0)
    with pytest.raises(UnseeError, match="--seed must lie in"):
        GenerateConfig(prompt="a", seed=2**32, out=tmp_path)


def test_batches_never_mix_guidance_scales():
    jobs = [Job(i, "p", i, g) for i, g in enumerate([7, 7, 7, 3, 3, 7])]
    assert [[j.index for j in b] for b in batches(jobs, 2)] == [[0, 1], [2], [3, 4], [5]]
