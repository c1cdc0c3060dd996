"""Journeys: reactive marketing as data. A journey (entry event, steps, exit rules) is
a versioned document (`model`, `store`); the `engine` walks a customer through it as
pure logic; `enrollments` keeps where each customer is, with compare-and-swap moves and
an outbox of sends; `sending` makes a step's sends. Sharded actors
(`actors.journeys`) hold the timers. Uses `app.core`, `app.audience`, `app.channels`.
"""
