from {{ cookiecutter.project_slug }}.train import main as train_main


def fails_with_one_line(capsys, flags: list[str]) -> str:
    assert train_main([*flags, "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error:") and "Traceback" not in error
    return error


def test_existing_run_folder_is_never_overwritten(train, tmp_path, capsys):
    run_dir = train()
    before = (run_dir / "last.pt").read_bytes()
    error = fails_with_one_line(capsys, ["--output-dir", str(tmp_path), "--name", "run"])
    assert "--resume auto" in error
    assert (run_dir / "last.pt").read_bytes() == before


def test_resume_from_a_missing_file(tmp_path, capsys):
    flags = ["--output-dir", str(tmp_path), "--resume", str(tmp_path / "nope.pt")]
    assert "does not exist" in fails_with_one_line(capsys, flags)


def test_batch_larger_than_the_dataset(tmp_path, capsys):
    flags = ["--output-dir", str(tmp_path), "--batch-size", "100000"]
    assert "--batch-size" in fails_with_one_line(capsys, flags)
