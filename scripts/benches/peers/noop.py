"""The floor of any script addon: one whose hooks return at once, in the shape authgw's
own script has (an ``addons`` list, every other hook name bound to None, which spares
mitmproxy a formatted AttributeError per event)."""

from mitmproxy import hooks


class Noop:
    def requestheaders(self, flow: object) -> None:
        pass

    def request(self, flow: object) -> None:
        pass

    def response(self, flow: object) -> None:
        pass


addons = [Noop()]
globals().update(dict.fromkeys(hooks.all_hooks.keys() - globals().keys() - {"add_log"}, None))
