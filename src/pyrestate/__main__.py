from pyrestate.cli.main import app

app(prog_name="pyrestate")
