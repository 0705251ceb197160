def test_health(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    r = http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_checkin_unlocks(world):
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]])
    r = world.checkin(world.user(), *v["center"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "accepted", body
    assert len(body["unlocked"]) == 1
