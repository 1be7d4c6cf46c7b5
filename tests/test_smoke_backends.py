import labtrack as lt


def test_a_run_round_trips_on_every_backend(store_url: str) -> None:
    lt.set_store(store_url)
    with lt.start_run("exp", params={"lr": 0.1}) as run:
        run.log_metric("loss", float("nan"), step=0)
        run.log_metric("loss", 0.5, step=1)
    got = lt.get_run(run.id)
    assert got.status is lt.RunStatus.FINISHED
    assert got.params == {"lr": 0.1}
    assert got.history("loss").values[1] == 0.5
