from fastleak.cli.main import run

run()
