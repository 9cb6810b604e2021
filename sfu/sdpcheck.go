package sfu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
)

// validateSDP rejects descriptions pion would choke on, with a precise reason.
// pion enters the new signaling state before it checks mids, codecs, ICE
// credentials and the fingerprint, and cannot roll back: a description
// failing those checks would wedge the connection for good, so it must be
// refused before it reaches the peer connection.
func validateSDP(text string) error {
	_, err := parseSDP(text)
	return err
}

// parseSDP parses a description and validates it as validateSDP does.
func parseSDP(text string) (*sdp.SessionDescription, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if err := checkSDP(&sd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	return &sd, nil
}

func checkSDP(sd *sdp.SessionDescription) error {
	if len(sd.MediaDescriptions) == 0 {
		return errors.New("no media sections")
	}
	for i, md := range sd.MediaDescriptions {
		if mid, _ := md.Attribute(sdp.AttrKeyMID); mid == "" {
			return fmt.Errorf("m-line %d has no mid", i)
		}
		if err := checkMediaCodecs(md); err != nil {
			return fmt.Errorf("m-line %d: %w", i, err)
		}
	}
	master := candidateSection(sd)
	ufrag, _ := sd.Attribute("ice-ufrag")
	pwd, _ := sd.Attribute("ice-pwd")
	if ufrag == "" && master != nil {
		if u, _ := master.Attribute("ice-ufrag"); u != "" {
			ufrag = u
			pwd, _ = master.Attribute("ice-pwd")
		}
	}
	if ufrag == "" || pwd == "" {
		return errors.New("no ICE ufrag and pwd")
	}
	if master != nil {
		if err := checkCandidates(master); err != nil {
			return err
		}
	}
	fp, ok := sd.Attribute("fingerprint")
	for _, md := range sd.MediaDescriptions {
		if ok && fp != "" {
			break
		}
		if mid, _ := md.Attribute(sdp.AttrKeyMID); bundleID(sd) == "" || mid == bundleID(sd) {
			fp, ok = md.Attribute("fingerprint")
		}
	}
	if len(strings.Split(fp, " ")) != 2 {
		return fmt.Errorf("no valid DTLS fingerprint (%q)", fp)
	}
	return nil
}

// checkMediaCodecs checks an audio or video section's payload types, RTX
// associations and header extensions parse as pion will parse them; the
// payload types of a rejected section (port 0) are not looked at.
func checkMediaCodecs(md *sdp.MediaDescription) error {
	if !strings.EqualFold(md.MediaName.Media, "audio") && !strings.EqualFold(md.MediaName.Media, "video") {
		return nil
	}
	formats := md.MediaName.Formats
	if md.MediaName.Port.Value == 0 {
		formats = nil
	}
	codecs := (&sdp.SessionDescription{MediaDescriptions: []*sdp.MediaDescription{md}}).GetCodecMap()
	for _, f := range formats {
		pt, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			return fmt.Errorf("payload type %q", f)
		}
		codec, ok := codecs[uint8(pt)]
		if !ok && pt != 0 {
			return fmt.Errorf("payload type %d has no rtpmap", pt)
		}
		for _, param := range strings.Split(codec.Fmtp, ";") {
			k, v, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(k), "apt") {
				if _, err := strconv.ParseUint(strings.TrimSpace(v), 10, 8); err != nil {
					return fmt.Errorf("payload type %d: apt %q", pt, v)
				}
			}
		}
	}
	for _, a := range md.Attributes {
		if a.Key == sdp.AttrKeyExtMap {
			var e sdp.ExtMap
			if err := e.Unmarshal(a.String()); err != nil {
				return fmt.Errorf("extmap %q: %w", a.Value, err)
			}
		}
	}
	return nil
}

// bundleID is the first mid of the BUNDLE group, as pion reads it.
func bundleID(sd *sdp.SessionDescription) string {
	group, _ := sd.Attribute(sdp.AttrKeyGroup)
	ids := strings.Split(group, " ")
	if !strings.Contains(group, "BUNDLE") || len(ids) < 2 {
		return ""
	}
	return ids[1]
}

// candidateSection is the section pion takes ICE details from: the bundle
// master, or the first section without bundle.
func candidateSection(sd *sdp.SessionDescription) *sdp.MediaDescription {
	id := bundleID(sd)
	for _, md := range sd.MediaDescriptions {
		if mid, _ := md.Attribute(sdp.AttrKeyMID); id == "" || mid == id {
			return md
		}
	}
	return nil
}

// checkCandidates fails when a section's candidates are all unparsable.
func checkCandidates(md *sdp.MediaDescription) error {
	var lastErr error
	for _, a := range md.Attributes {
		if !a.IsICECandidate() {
			continue
		}
		_, err := ice.UnmarshalCandidate(a.Value)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ice.ErrUnknownCandidateTyp) && !errors.Is(err, ice.ErrDetermineNetworkType) {
			lastErr = err
		}
	}
	if lastErr != nil {
		return fmt.Errorf("no valid ICE candidate: %w", lastErr)
	}
	return nil
}
