"""The hello plugin's side in the sidecar image: ``server``, run as a sidecar service.

``bottle image build`` copies this package into the image under the same name
(the plugin's ``ImagePart``), so it imports only the stdlib and the sidecar
kit, ``bottle_sidecar``: the image has nothing else.
"""
