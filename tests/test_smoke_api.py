def test_checkin_unlocks(world):
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]])
    r = world.checkin(world.user(), *v["center"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "accepted", body
    assert len(body["unlocked"]) == 1
