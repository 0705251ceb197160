"""The console: server-rendered pages under /dashboard for merchants, their marketers and
till staff. Pages call the same offers/ and geo/ functions as the JSON API, so a figure on a
page is the figure the API reports."""
