# OneLab learner containers: nbgrader's exchange runs on a private folder synced with the hub's
# exchange service (no shared directory between learners). See onelab_exchange.py.
import os

c = get_config()  # noqa: F821
c.Exchange.root = os.path.join(os.path.expanduser("~"), ".local", "share", "onelab", "exchange")
c.Exchange.path_includes_course = True
c.ExchangeFactory.list = "onelab_exchange.OneLabList"
c.ExchangeFactory.fetch_assignment = "onelab_exchange.OneLabFetchAssignment"
c.ExchangeFactory.fetch_feedback = "onelab_exchange.OneLabFetchFeedback"
c.ExchangeFactory.submit = "onelab_exchange.OneLabSubmit"
